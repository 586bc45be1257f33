"""The builtin copy model: tokenizer, corpus, training into versioned artifacts, the backend
loading through the real code, seeded and batched generation, facts and limits, errors."""

from __future__ import annotations

import itertools
import json
import random
from decimal import Decimal
from io import StringIO
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command

from aigc_django.generation.backends import copy_backend
from aigc_django.generation.backends.builtin_copy import BuiltinCopyBackend
from aigc_django.generation.briefs import Brief, Product, category_name
from aigc_django.generation.copymodel import model as copymodel
from aigc_django.generation.copymodel.corpus import Masker, build_corpus, read_starter
from aigc_django.generation.copymodel.quality import (
    CatalogFacts,
    distinct_n,
    fact_errors,
    segment_relevance,
)
from aigc_django.generation.copymodel.sample import gumbel_noise
from aigc_django.generation.copymodel.tokenizer import Tokenizer, pieces
from aigc_django.generation.copymodel.train import train_copy_model
from aigc_django.models import ModelArtifact, Segment, Slot, Variant
from tests.shopapp.models import Category
from tests.shopapp.models import Product as ShopProduct

pytestmark = pytest.mark.django_db

WORDS = {
    "running-shoes": (
        ("Trail", "Urban", "Cloud", "Summit", "Metro"),
        ("Mesh", "Knit", "Waterproof"),
        ("Runner", "Racer", "Trainer"),
        ("a cushioned footbed", "a grippy outsole", "a breathable lining", "a light midsole"),
        ("long runs", "city miles", "race day", "rainy mornings"),
    ),
    "kitchen": (
        ("Copper", "Cast Iron", "Stoneware", "Steel"),
        ("Chef", "Everyday", "Family"),
        ("Pan", "Pot", "Kettle", "Knife Set"),
        ("an even heat spread", "a stay-cool handle", "a non-stick finish", "a sharp edge"),
        ("weeknight dinners", "slow Sunday roasts", "breakfast for two", "big batch cooking"),
    ),
    "books": (
        ("The Quiet", "The Last", "The Hidden", "The Long"),
        ("Harbor", "Garden Path", "Winter", "Lighthouse"),
        ("Story", "Chronicle", "Letters"),
        ("a gripping plot", "vivid characters", "short chapters", "a twist you will not see"),
        ("lazy Sundays", "the commute", "bedtime reading", "a long flight"),
    ),
}
CLOSINGS = ("Free returns within 30 days.", "Wipe clean with a damp cloth.", "A gift they'll love.")


def make_shop(per_category: int = 12, seed: int = 0) -> dict[str, list[ShopProduct]]:
    """Products in three categories, two learned segments and a slot with approved copy."""
    rng = random.Random(seed)
    made: dict[str, list[ShopProduct]] = {}
    for slug, (first, second, third, features, uses) in WORDS.items():
        category = Category.objects.create(slug=slug, name=category_name(slug))
        names = [" ".join(p) for p in itertools.product(first, second, third)]
        rng.shuffle(names)
        made[slug] = []
        for n, name in enumerate(names[:per_category]):
            a, b = rng.sample(features, 2)
            made[slug].append(
                ShopProduct.objects.create(
                    sku=f"{slug[:3].upper()}-{n:03d}",
                    name=name,
                    description=(
                        f"The {name} comes with {a} and {b}. Made for {rng.choice(uses)}. "
                        f"{rng.choice(CLOSINGS)}"
                    ),
                    price=Decimal(f"{rng.randint(9, 199)}.{rng.choice(('00', '49', '95'))}"),
                    category=category,
                )
            )
    Segment.objects.get_or_create(
        key="everyone", defaults={"name": "Everyone", "kind": Segment.Kind.EVERYONE}
    )
    runners = Segment.objects.create(
        key="runners",
        name="Runners",
        top_categories=[["running-shoes", 0.8], ["books", 0.1]],
        top_items=[p.sku for p in made["running-shoes"][:4]],
    )
    Segment.objects.create(
        key="cooks",
        name="Cooks",
        top_categories=[["kitchen", 0.9]],
        top_items=[p.sku for p in made["kitchen"][:4]],
    )
    slot = Slot.objects.create(
        key="home-hero",
        name="Home hero",
        copy_fields={"headline": 40, "body": 120, "cta": 18},
        brief="The big banner on the home page. Keep it short and friendly.",
    )
    shoe = made["running-shoes"][0]
    Variant.objects.create(
        slot=slot,
        segment=runners,
        status=Variant.Status.APPROVED,
        copy={
            "headline": f"{shoe.name}: ready for race day",
            "body": f"Get the {shoe.name} for {shoe.price} and run further.",
            "cta": "Lace up",
        },
    )
    return made


def brief_for(segment: str, products: list[ShopProduct], seed: int = 0, **fields: int) -> Brief:
    items = [
        Product(
            key=p.sku,
            title=p.name,
            category=p.category.slug,
            category_name=category_name(p.category.slug),
            price=float(p.price),
        )
        for p in products
    ]
    categories = list(dict.fromkeys((p.category, p.category_name) for p in items))
    return Brief(
        slot="home-hero",
        segment=segment,
        segment_name=segment.title(),
        fields=fields or {"headline": 40, "body": 120, "cta": 18},
        categories=categories,
        products=items,
        seed=seed,
    )


@pytest.fixture
def models_dir(aigc, tmp_path) -> Path:
    aigc(MODEL_DIR=str(tmp_path / "models"))
    return tmp_path / "models"


def train_small(**kwargs) -> ModelArtifact:
    """A tiny model that trains in a second or two."""
    options = {"epochs": 8, "d_model": 64, "n_layers": 2, "n_heads": 4, "device": "cpu"}
    return train_copy_model(**{**options, **kwargs})


def test_tokenizer_round_trip_and_single_token_placeholders():
    text = "New in {category}: the {product}, only {price}! Don't miss slip-on (light) shoes."
    controls = ["<seg:runners>", "<cat:any>", "<slot:any>", "<field:headline>"]
    tokenizer = Tokenizer.train([text], controls=controls)
    assert tokenizer.decode(tokenizer.encode(text)) == text
    assert "▁{product}" in pieces(text) and "▁{price}" in pieces(text)
    assert tokenizer.unk_id not in tokenizer.encode(text)
    assert tokenizer.encode("zebra") == [tokenizer.unk_id]
    prefix = tokenizer.prefix("runners", "shoes", "nowhere", "headline")
    assert [tokenizer.tokens[i] for i in prefix] == [
        "<bos>",
        "<seg:runners>",
        "<cat:any>",  # unknown keys read as "any"
        "<slot:any>",
        "<field:headline>",
    ]


def test_corpus_puts_facts_behind_placeholders(models_dir):
    made = make_shop(per_category=6)
    corpus = build_corpus()
    texts = [e.text for e in corpus.examples if e.field in ("body", "headline", "cta")]
    assert any("{product}" in t for t in texts)
    titles = [p.name.lower() for ps in made.values() for p in ps]
    for example in corpus.examples:
        if example.field in ("body", "headline", "cta", "brief"):
            assert not any(title in example.text.lower() for title in titles), example
            assert not any(ch.isdigit() for ch in example.text.replace("30 days", "")), example
    approved = [e for e in corpus.examples if e.weight > 1]
    assert {e.field for e in approved} == {"headline", "body", "cta"}
    assert any(e.text == "Get the {product} for {price} and run further." for e in approved)
    starter = {text for _, text in read_starter()}
    runner_labels = {
        e.segment
        for e in corpus.examples
        if e.category == "running-shoes" and e.text not in starter and e.weight == 1
    }
    assert runner_labels <= {"runners", "everyone"} and "runners" in runner_labels
    assert corpus.category_names["running-shoes"] == "Running shoes"
    masker = Masker(["Alpine Tent"])
    assert masker.mask("Pairs well with the Alpine Tent.") is None  # another product
    assert masker.mask("Now 12.50 off.") is None  # a price that is not the item's


def test_training_makes_versioned_artifacts_and_deactivates_older(models_dir):
    make_shop(per_category=6)
    steps = []
    first = train_small(epochs=2, progress=lambda step, total: steps.append((step, total)))
    assert (first.version, first.active) == (1, True)
    assert steps and steps[-1][0] == steps[-1][1] == first.metrics["steps"]
    for name in ("config.json", "model.safetensors", "tokenizer.json", "facts.json"):
        assert (Path(first.path) / name).is_file()
    assert Path(first.path) == models_dir / "copy" / "v1"
    assert first.metrics["heldout_perplexity"] > 1 and first.metrics["vocab"] > 50
    second = train_small(epochs=2)
    first.refresh_from_db()
    assert (second.version, second.active, first.active) == (2, True, False)
    assert json.loads((Path(second.path) / "config.json").read_text())["version"] == 2


def test_training_lowers_the_held_out_loss(models_dir):
    make_shop(per_category=8)
    short = train_small(epochs=1).metrics["heldout_loss"]
    longer = train_small(epochs=10).metrics["heldout_loss"]
    assert longer < short - 0.5


def test_backend_loads_the_active_artifact_and_writes_seeded_copy_within_limits(models_dir):
    made = make_shop()
    artifact = train_small()
    backend = copy_backend()
    assert isinstance(backend, BuiltinCopyBackend)
    shoes = made["running-shoes"][:4]
    kitchen = made["kitchen"][:4]
    briefs = [brief_for("runners", shoes, seed=s) for s in range(5)]
    briefs += [brief_for("cooks", kitchen, seed=s, headline=30, body=80) for s in range(5)]
    drafts = backend.generate(briefs)
    assert len(drafts) == len(briefs)
    assert backend.model_version == str(artifact.version) == "1"
    facts = CatalogFacts.from_catalog()
    for brief, draft in zip(briefs, drafts, strict=True):
        assert set(draft.fields) == set(brief.fields)
        for name, limit in brief.fields.items():
            assert 0 < len(draft.fields[name]) <= limit, (name, draft.fields[name])
        assert fact_errors(draft.fields, facts, brief) == []
        assert draft.provenance.model == "copy" and draft.provenance.version == "1"
        assert draft.provenance.seed == brief.seed and draft.notes["candidates"] == 4
        assert draft.notes["product"] in {p.key for p in brief.products}
    # The same seeds give the same copy, in a batch or alone; other seeds give other copy.
    again = backend.generate(briefs[:3])
    assert [d.fields for d in again] == [d.fields for d in drafts[:3]]
    assert backend.generate([briefs[1]])[0].fields == drafts[1].fields
    texts = [" ".join(d.fields.values()) for d in drafts[:5]]
    assert len(set(texts)) > 1 and distinct_n(texts) > 0.3
    # Loaded once for the process: the second call did not load again.
    assert drafts[0].provenance.timings["load"] > 0
    assert again[0].provenance.timings["load"] == 0


def test_backend_from_a_path_and_unfillable_placeholders(models_dir):
    made = make_shop(per_category=6)
    artifact = train_small()
    backend = BuiltinCopyBackend("x", {"PATH": artifact.path, "CANDIDATES": 2, "TOP_K": 0})
    no_products = Brief(
        slot="home-hero",
        segment="nobody-knows-me",
        segment_name="New",
        fields={"headline": 50, "body": 100, "cta": 20},
        categories=[("kitchen", "Kitchen")],
        seed=7,
    )
    priceless = brief_for("cooks", made["kitchen"][:1], seed=3)
    priceless = Brief(
        **{**priceless.as_dict(), "products": [Product("K", "Plain Pot", "kitchen", "Kitchen")]}
    )
    drafts = backend.generate([no_products, priceless])
    for draft, brief in zip(drafts, [no_products, priceless], strict=True):
        for name, text in draft.fields.items():
            assert "{" not in text and 0 < len(text) <= brief.fields[name]
    assert fact_errors(drafts[1].fields, CatalogFacts.from_catalog(), priceless) == []


def test_facts_check_catches_wrong_prices_products_and_categories(models_dir):
    made = make_shop(per_category=4)
    facts = CatalogFacts.from_catalog()
    shoe, other, pan = made["running-shoes"][0], made["running-shoes"][1], made["kitchen"][0]
    brief = brief_for("runners", [shoe])
    good = {"headline": f"{shoe.name} for {shoe.price}", "body": "Running shoes for you."}
    assert fact_errors(good, facts, brief) == []
    assert fact_errors({"headline": f"{shoe.name} for 1.99"}, facts, brief)
    assert fact_errors({"headline": f"Only {other.price}"}, facts, brief) or (
        other.price == shoe.price
    )
    assert fact_errors({"headline": f"Meet the {other.name}"}, facts, brief)
    assert fact_errors({"headline": "Kitchen deals"}, facts, brief)
    assert fact_errors({"headline": "New {product}"}, facts, brief)
    assert fact_errors({"headline": f"{pan.name} for {pan.price}"}, facts) == []
    assert distinct_n(["a b c", "a b c"]) == pytest.approx(0.5)
    assert segment_relevance(["Great running shoes", "Hello"], ["Running shoes"]) == 0.5


def test_missing_model_gives_a_clear_error(models_dir, tmp_path):
    backend = BuiltinCopyBackend("default", {})
    brief = Brief(slot="s", segment="e", segment_name="E", fields={"headline": 20})
    with pytest.raises(ImproperlyConfigured, match="aigc_train") as caught:
        backend.generate([brief])
    assert str(models_dir / "copy") in str(caught.value)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(copymodel.CopyModelMissing, match=r"missing config\.json.*aigc_train"):
        BuiltinCopyBackend("x", {"PATH": str(empty)}).generate([brief])
    with pytest.raises(copymodel.CopyModelMissing, match="does not exist"):
        BuiltinCopyBackend("x", {"PATH": str(tmp_path / "nowhere")}).generate([brief])
    for name in copymodel.FILES:
        (empty / name).write_text("not json")
    with pytest.raises(copymodel.CopyModelMissing, match="unreadable"):
        BuiltinCopyBackend("x", {"PATH": str(empty)}).generate([brief])


@pytest.mark.parametrize(
    "options",
    [
        {"CANDIDATES": 0},
        {"CANDIDATES": 2.5},
        {"CANDIDATES": "4"},
        {"TEMPERATURE": 0},
        {"TEMPERATURE": True},
        {"TOP_K": -1},
        {"DEVICE": 3},
        {"PATH": ""},
        {"SIZE": "big"},
    ],
)
def test_bad_options_are_improperly_configured(options):
    with pytest.raises(ImproperlyConfigured, match=r"COPY_BACKENDS\['default'\] OPTIONS"):
        BuiltinCopyBackend("default", options)


def test_noise_depends_on_the_row_key_only():
    import torch

    keys = torch.tensor([5, 6, 5], dtype=torch.int64)
    noise = gumbel_noise(keys, 3, 50)
    assert torch.equal(noise[0], noise[2]) and not torch.equal(noise[0], noise[1])
    assert torch.equal(gumbel_noise(keys[:1], 3, 50)[0], noise[0])
    assert not torch.equal(gumbel_noise(keys, 4, 50)[0], noise[0])


def test_aigc_train_command(models_dir):
    make_shop(per_category=4)
    out = StringIO()
    call_command("aigc_train", "--epochs", "1", "--device", "cpu", "--no-progress", stdout=out)
    artifact = ModelArtifact.objects.get(kind="copy", active=True)
    assert f"copy model v{artifact.version}" in out.getvalue()
    assert "held-out perplexity" in out.getvalue()


def test_cached_steps_give_the_full_forward_logits():
    import torch

    torch.manual_seed(0)
    model = copymodel.CopyModel(copymodel.CopyModelConfig(vocab_size=30, d_model=32)).eval()
    ids = torch.randint(0, 30, (3, 9))
    with torch.no_grad():
        full = model(ids)
        logits, cache = model.step(ids[:, :5])
        steps = [logits]
        for t in range(5, 9):
            logits, cache = model.step(ids[:, t : t + 1], cache)
            steps.append(logits)
    assert torch.allclose(torch.cat(steps, dim=1), full, atol=1e-5)


def test_train_copy_model_task_returns_the_new_version(models_dir):
    from aigc_django.tasks import train_copy_model as task

    make_shop(per_category=4)
    result = task.apply(kwargs={"epochs": 1}).get()
    artifact = ModelArtifact.objects.get(kind="copy", active=True)
    assert result == {"version": artifact.version, "metrics": artifact.metrics}


def test_task_routes_send_generation_and_training_to_the_gpu_queue():
    from aigc_django.tasks import beat_schedule, task_routes

    routes = task_routes()
    assert routes["aigc_django.generate_variants"] == {"queue": "aigc_gpu"}
    assert routes["aigc_django.train_copy_model"] == {"queue": "aigc_gpu"}
    assert routes["aigc_django.*"] == {"queue": "aigc"}
    assert task_routes("cpu", "gpu")["aigc_django.generate_variants"] == {"queue": "gpu"}
    entry = beat_schedule(queue="q")["aigc-plan-generation"]
    assert entry["task"] == "aigc_django.plan_generation" and entry["options"] == {"queue": "q"}
