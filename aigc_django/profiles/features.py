"""Events -> per-visitor features: decayed category interests, RFM figures, cart state,
device and referrer, and the (visitor, item, weight) interactions for factorization.

Everything is computed in torch over whole columns; the only per-row Python work is reading
the rows from the database and mapping keys to indices.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import torch
from django.db import connections, router, transaction
from django.db.models.fields.json import KT

from aigc_django.conf import aigc_settings
from aigc_django.models import Event

SECONDS_PER_DAY = 86400.0


class KeyIndex:
    """Stable string -> 0..n-1 numbering."""

    def __init__(self) -> None:
        self.index: dict[Any, int] = {}
        self.keys: list[Any] = []

    def __call__(self, key: Any) -> int:
        found = self.index.get(key)
        if found is None:
            found = self.index[key] = len(self.keys)
            self.keys.append(key)
        return found

    def __len__(self) -> int:
        return len(self.keys)


@dataclass
class EventColumns:
    """Events as parallel columns, keys replaced by indices (-1: none)."""

    visitors: KeyIndex = field(default_factory=KeyIndex)
    categories: KeyIndex = field(default_factory=KeyIndex)
    items: KeyIndex = field(default_factory=KeyIndex)
    kinds: KeyIndex = field(default_factory=KeyIndex)
    visitor: array = field(default_factory=lambda: array("q"))
    kind: array = field(default_factory=lambda: array("q"))
    category: array = field(default_factory=lambda: array("q"))
    item: array = field(default_factory=lambda: array("q"))
    value: array = field(default_factory=lambda: array("d"))
    time: array = field(default_factory=lambda: array("d"))
    # Last device and referrer seen per visitor index.
    device: dict[int, str] = field(default_factory=dict)
    referrer: dict[int, str] = field(default_factory=dict)
    # Which category each item was seen in (fills purchases that list items only).
    item_category: dict[int, int] = field(default_factory=dict)

    def add(
        self,
        visitor: Any,
        kind: str,
        item: str,
        category: str,
        value: float | None,
        when: datetime | float,
        device: str | None = None,
        referrer: str | None = None,
    ) -> None:
        """One event; ``when`` is an aware datetime or a Unix time in seconds."""
        v = self.visitors(str(visitor))
        i = self.items(item) if item else -1
        c = self.categories(category) if category else -1
        if i >= 0:
            if c >= 0:
                self.item_category.setdefault(i, c)
            else:
                c = self.item_category.get(i, -1)
        self.visitor.append(v)
        self.kind.append(self.kinds(kind))
        self.item.append(i)
        self.category.append(c)
        self.value.append(value if value is not None else math.nan)
        self.time.append(when if isinstance(when, float) else when.timestamp())
        if device:
            self.device[v] = device
        if referrer:
            self.referrer[v] = referrer

    def __len__(self) -> int:
        return len(self.visitor)


def read_events(visitor_ids: Sequence[Any] | None = None, chunk: int = 20_000) -> EventColumns:
    """Read events (all, or those of some visitors) into columns, oldest first.

    A purchase that names no item but lists ``properties["items"]`` (a list of keys, or a
    dict of key -> quantity) also counts as a purchase of each listed item; its money stays
    on the purchase itself.
    """
    columns = EventColumns()
    events = Event.objects.all()
    if visitor_ids is not None:
        visitor_ids = list(visitor_ids)
        events = events.filter(visitor_id__in=visitor_ids)
    using = router.db_for_read(Event)
    if connections[using].vendor == "postgresql":
        whole_cart_purchases = _read_postgresql(columns, visitor_ids, using, chunk)
    else:
        whole_cart_purchases = _read_orm(columns, events, chunk)
    if whole_cart_purchases:
        _add_listed_purchases(columns, events)
    return columns


def _read_orm(columns: EventColumns, events: Any, chunk: int) -> bool:
    """Fill ``columns`` through the ORM (every database but PostgreSQL). True when some
    purchase names no item."""
    rows = events.order_by("occurred_at", "id").values_list(
        "visitor_id",
        "kind",
        "item_key",
        "category_key",
        "value",
        "occurred_at",
        KT("properties__device"),
        KT("properties__referrer"),
    )
    whole_cart_purchases = False
    for visitor, kind, item, category, value, when, device, referrer in rows.iterator(chunk):
        columns.add(visitor, kind, item, category, value, when, device, referrer)
        whole_cart_purchases |= kind == "purchase" and not item
    return whole_cart_purchases


READ_SQL = (
    "SELECT visitor_id::text, kind, item_key, category_key, value, "
    "extract(epoch FROM occurred_at)::float8, properties->>'device', "
    "properties->>'referrer' FROM {table}{where} ORDER BY occurred_at, id"
)


def _read_postgresql(
    columns: EventColumns, visitor_ids: list[Any] | None, using: str, chunk: int
) -> bool:
    """Fill ``columns`` through a server-side cursor, the values converted in SQL (text ids,
    Unix times, the two JSON keys as text): the ORM's per-value converters (UUIDs, aware
    datetimes, JSON) were most of a rebuild's reading time. True when some purchase names
    no item."""
    connection = connections[using]
    table = connection.ops.quote_name(Event._meta.db_table)
    where, params = "", []
    if visitor_ids is not None:
        where = " WHERE visitor_id = ANY(%s::uuid[])"
        params = [[str(v) for v in visitor_ids]]
    add = columns.add
    whole_cart_purchases = False
    with transaction.atomic(using=using), connection.chunked_cursor() as cursor:
        cursor.execute(READ_SQL.format(table=table, where=where), params)
        while rows := cursor.fetchmany(chunk):
            for visitor, kind, item, category, value, when, device, referrer in rows:
                add(visitor, kind, item, category, value, when, device, referrer)
                whole_cart_purchases |= kind == "purchase" and not item
    return whole_cart_purchases


def _add_listed_purchases(columns: EventColumns, events: Any) -> None:
    """One "purchase_item" row per item a whole-cart purchase lists. Those rows weigh like
    purchases for interests and factorization; the money stays on the purchase row."""
    purchases = events.filter(kind="purchase", item_key="").values_list(
        "visitor_id", "occurred_at", "properties"
    )
    for visitor, when, properties in purchases.iterator(2000):
        keys = properties.get("items") if isinstance(properties, dict) else None
        for key in keys or ():
            if isinstance(key, str) and key:
                columns.add(visitor, "purchase_item", key, "", None, when)


@dataclass
class VisitorFeatures:
    """Per-visitor features, rows in ``visitor_keys`` order."""

    visitor_keys: list[str]
    category_keys: list[str]
    interests: torch.Tensor  # (visitors, categories) decayed weights, >= 0
    event_counts: torch.Tensor  # (visitors,)
    recency_days: torch.Tensor  # (visitors,)
    monetary: torch.Tensor  # (visitors,)
    cart_open: torch.Tensor  # (visitors,) bool
    last_cart: torch.Tensor  # (visitors,) unix time, nan when never
    first_seen: torch.Tensor  # (visitors,) unix time
    device: list[str]
    referrer: list[str]
    real_events: int = 0  # stored events (whole-cart purchases add rows per listed item)

    def shares(self) -> torch.Tensor:
        """Interests as shares of each visitor's total (rows sum to 1, or 0 when empty)."""
        total = self.interests.sum(dim=1, keepdim=True)
        return torch.where(total > 0, self.interests / total.clamp_min(1e-12), 0.0)

    def __len__(self) -> int:
        return len(self.visitor_keys)


def kind_weights(kinds: list[str]) -> torch.Tensor:
    weights = aigc_settings.PROFILES["KIND_WEIGHTS"]
    return torch.tensor(
        [float(weights.get("purchase" if k == "purchase_item" else k, 0.0)) for k in kinds],
        dtype=torch.float64,
    )


def decay(times: torch.Tensor, now: float) -> torch.Tensor:
    half_life = aigc_settings.PROFILES["HALF_LIFE_DAYS"] * SECONDS_PER_DAY
    age = (now - times).clamp_min(0.0)
    return torch.exp2(-age / half_life)


def build_features(columns: EventColumns, now: datetime) -> VisitorFeatures:
    n_visitors, n_categories = len(columns.visitors), len(columns.categories)
    visitor = torch.frombuffer(columns.visitor, dtype=torch.int64) if len(columns) else _empty()
    kind = torch.frombuffer(columns.kind, dtype=torch.int64) if len(columns) else _empty()
    category = torch.frombuffer(columns.category, dtype=torch.int64) if len(columns) else _empty()
    value = _floats(columns.value)
    times = _floats(columns.time)
    stamp = now.timestamp()

    real = kind != columns.kinds.index.get("purchase_item", -2)
    weight = kind_weights(columns.kinds.keys)[kind] * decay(times, stamp)
    interests = torch.zeros(n_visitors * max(n_categories, 1), dtype=torch.float64)
    has_category = category >= 0
    interests.index_add_(
        0,
        visitor[has_category] * max(n_categories, 1) + category[has_category],
        weight[has_category],
    )
    interests = interests.view(n_visitors, max(n_categories, 1))[:, :n_categories]
    # remove_from_cart can push a category below zero; no interest is the floor.
    interests = interests.clamp_min(0.0).float()

    counts = torch.zeros(n_visitors, dtype=torch.float64)
    counts.index_add_(0, visitor[real], torch.ones(int(real.sum()), dtype=torch.float64))
    last = torch.full((n_visitors,), -math.inf, dtype=torch.float64)
    last.scatter_reduce_(0, visitor, times, reduce="amax")
    first = torch.full((n_visitors,), math.inf, dtype=torch.float64)
    first.scatter_reduce_(0, visitor, times, reduce="amin")

    purchase = kind == columns.kinds.index.get("purchase", -2)
    money = torch.zeros(n_visitors, dtype=torch.float64)
    paid = purchase & ~torch.isnan(value)
    money.index_add_(0, visitor[paid], value[paid])
    last_purchase = _last_time(visitor, times, purchase, n_visitors)
    add = kind == columns.kinds.index.get("add_to_cart", -2)
    remove = kind == columns.kinds.index.get("remove_from_cart", -2)
    last_add = _last_time(visitor, times, add, n_visitors)
    # The cart is open when more was added than removed since the last purchase.
    since_purchase = times > last_purchase[visitor]
    net = torch.zeros(n_visitors, dtype=torch.int64)
    net.index_add_(
        0,
        visitor[add & since_purchase],
        torch.ones(int((add & since_purchase).sum()), dtype=torch.int64),
    )
    net.index_add_(
        0,
        visitor[remove & since_purchase],
        -torch.ones(int((remove & since_purchase).sum()), dtype=torch.int64),
    )

    return VisitorFeatures(
        visitor_keys=list(columns.visitors.keys),
        category_keys=list(columns.categories.keys),
        interests=interests,
        event_counts=counts.to(torch.int64),
        real_events=int(real.sum()),
        recency_days=((stamp - last) / SECONDS_PER_DAY).float(),
        monetary=money.float(),
        cart_open=net > 0,
        last_cart=torch.where(torch.isinf(last_add), math.nan, last_add),
        first_seen=first,
        device=[columns.device.get(i, "") for i in range(n_visitors)],
        referrer=[columns.referrer.get(i, "") for i in range(n_visitors)],
    )


def interactions(columns: EventColumns, now: datetime) -> tuple[torch.Tensor, ...]:
    """(visitor rows, item rows, decayed weights) of events that name an item and say
    something positive about it, for factorization."""
    if not len(columns):
        return _empty(), _empty(), torch.zeros(0)
    visitor = torch.frombuffer(columns.visitor, dtype=torch.int64)
    item = torch.frombuffer(columns.item, dtype=torch.int64)
    kind = torch.frombuffer(columns.kind, dtype=torch.int64)
    weight = kind_weights(columns.kinds.keys)[kind] * decay(_floats(columns.time), now.timestamp())
    keep = (item >= 0) & (weight > 0)
    return visitor[keep].clone(), item[keep].clone(), weight[keep].float()


def _last_time(
    visitor: torch.Tensor, times: torch.Tensor, mask: torch.Tensor, n: int
) -> torch.Tensor:
    last = torch.full((n,), -math.inf, dtype=torch.float64)
    if bool(mask.any()):
        last.scatter_reduce_(0, visitor[mask], times[mask], reduce="amax")
    return last


def _floats(values: array) -> torch.Tensor:
    if not len(values):
        return torch.zeros(0, dtype=torch.float64)
    return torch.frombuffer(values, dtype=torch.float64)


def _empty() -> torch.Tensor:
    return torch.zeros(0, dtype=torch.int64)


def iter_chunks(values: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]
