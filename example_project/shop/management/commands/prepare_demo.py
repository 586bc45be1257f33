"""Every stage of the pipeline on this machine, in order, for the demo."""

from __future__ import annotations

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = (
        "Prepare the demo: catalog and slots, simulated shoppers, profiles and segments, "
        "the copy model trained on this shop's text, the image GAN trained on its product "
        "images, the banner layout model trained on the composer's layouts, variants for every "
        "(slot, segment) "
        "cell, a share of them approved by a demo editor (the rest stay pending for the "
        "admin). Safe to run again."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--visitors", type=int, default=800)
        parser.add_argument("--epochs", type=int, help="Copy-model epochs (default: its own).")
        parser.add_argument(
            "--gan-epochs",
            type=int,
            default=40,
            help="Image GAN passes over the product images (default 40: about a minute).",
        )
        parser.add_argument(
            "--layout-epochs",
            type=int,
            default=20,
            help="Layout-model passes over its training layouts (default 20: about half a minute).",
        )
        parser.add_argument(
            "--editor-password",
            default="editor-demo",
            help='Password of the demo editor account "editor" (local demos only).',
        )

    def handle(
        self,
        *args,
        visitors: int,
        epochs: int | None,
        gan_epochs: int,
        layout_epochs: int,
        editor_password: str,
        **options,
    ) -> None:
        steps = [
            ("catalog", "seed_catalog", [], {}),
            ("slots", "seed_slots", [], {}),
            ("shoppers and segments", "simulate_traffic", ["--visitors", str(visitors)], {}),
            ("copy model", "aigc_train", ["--epochs", str(epochs)] if epochs else [], {}),
            # A short budget (about a minute on two CPU cores): enough for soft backgrounds in
            # the catalog's colours; `manage.py aigc_train gan` trains longer.
            ("image GAN", "aigc_train", ["gan", "--epochs", str(gan_epochs)], {}),
            # The demo's banners then take their layouts from the layout model.
            ("layout model", "aigc_train", ["layout", "--epochs", str(layout_epochs)], {}),
            ("variants", "aigc_generate", [], {}),
        ]
        done_already = self.done_already()
        for number, (title, command, arguments, kwargs) in enumerate(steps, 1):
            self.stdout.write(self.style.MIGRATE_HEADING(f"{number}/{len(steps)} {title}"))
            # Steps are known by their command and its model argument ("aigc_train gan").
            named = arguments[:1] if arguments and not arguments[0].startswith("-") else []
            skip = done_already.get(" ".join([command, *named]))
            if skip:
                self.stdout.write(skip)
                continue
            call_command(command, *arguments, stdout=self.stdout, stderr=self.stderr, **kwargs)
        editor = self.make_editor(editor_password)
        approved = self.approve_share(editor)
        self.stdout.write(f"The demo editor approved {approved} variants; the rest are pending.")
        self.stdout.write(
            self.style.SUCCESS(
                "Done. The shop: / (banners per visitor), /segments/, /generated/.\n"
                f"The admin: /admin/ as user 'editor', password '{editor_password}' "
                "(the review queue is Variants; the dashboard is linked from the app's page)."
            )
        )

    def done_already(self) -> dict[str, str]:
        """Steps a second run skips, so that running the demo twice changes nothing: the
        simulated shoppers (their events would count twice) and the trained copy model."""
        from aigc_django.models import ModelArtifact, Segment

        skip = {}
        if Segment.objects.filter(kind=Segment.Kind.LEARNED).exists():
            skip["simulate_traffic"] = (
                "Segments exist already: skipped (run `manage.py simulate_traffic` to add "
                "more shoppers)."
            )
        trained = set(ModelArtifact.objects.filter(active=True).values_list("kind", flat=True))
        for kind, what in (
            ("copy", "A copy model"),
            ("gan", "An image GAN"),
            ("layout", "A layout model"),
        ):
            if kind in trained:
                command = "aigc_train" if kind == "copy" else f"aigc_train {kind}"
                skip[command] = (
                    f"{what} is trained already: skipped (run `manage.py {command}` to "
                    "train a new version)."
                )
        return skip

    def approve_share(self, editor) -> int:
        """Approve the first safe variant of each (slot, segment) cell that has none approved,
        so visitors see personalized content at once; the others wait for the admin."""
        from aigc_django.models import Variant
        from aigc_django.moderation import review

        approved = 0
        cells = Variant.objects.values_list("slot_id", "segment_id").distinct()
        for slot_id, segment_id in cells:
            variants = Variant.objects.filter(slot_id=slot_id, segment_id=segment_id)
            if variants.filter(status=Variant.Status.APPROVED).exists():
                continue
            for variant in variants.filter(status=Variant.Status.PENDING).order_by("pk"):
                if variant.safety.get("ok"):
                    review.approve(variant, editor, note="approved by prepare_demo")
                    approved += 1
                    break
        return approved

    def make_editor(self, password: str):
        """An "Editors" group that may review content, and a demo editor in it."""
        from django.contrib.auth.models import Group, Permission, User

        editors, _ = Group.objects.get_or_create(name="Editors")
        codenames = [
            "review_variant",
            "view_variant",
            "change_variant",
            "view_slot",
            "change_slot",
            "view_segment",
            "view_generationjob",
            "add_generationjob",
            "view_review",
        ]
        editors.permissions.set(
            Permission.objects.filter(content_type__app_label="aigc_django", codename__in=codenames)
        )
        editor, created = User.objects.get_or_create(username="editor", defaults={"is_staff": True})
        if created:
            editor.set_password(password)
            editor.save()
        editor.groups.add(editors)
        return editor
