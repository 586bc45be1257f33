"""The catalog adapter: the host project's products as the app sees them.

Configured through ``AIGC["CATALOG"]``::

    AIGC = {
        "CATALOG": {
            "MODEL": "shop.Product",
            "FIELDS": {
                "key": "sku",                  # required: stable, unique
                "title": "name",               # required
                "category": "category__slug",  # required
                "description": "description",
                "price": "price",
                "image": "image",              # an ImageField/FileField, or a URL string
                "url": "get_absolute_url",     # a method is called without arguments
            },
            "QUERYSET": None,  # optional dotted path to a callable returning the live products
        }
    }

Each field is a path of attribute or field names joined by ``__``; callables are called.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from django.apps import apps
from django.core.exceptions import FieldDoesNotExist, ImproperlyConfigured, ValidationError
from django.db import models
from django.db.models.fields.files import FieldFile
from django.utils.module_loading import import_string

from aigc_django.conf import aigc_settings

REQUIRED_FIELDS = ("key", "title", "category")
OPTIONAL_FIELDS = ("description", "price", "image", "url")


@dataclass(frozen=True)
class CatalogItem:
    """One product, as the app needs it."""

    key: str
    title: str
    category: str
    description: str = ""
    price: float | None = None
    image_url: str = ""
    url: str = ""


def resolve_path(obj: Any, path: str) -> Any:
    """Follow ``a__b__c`` through attributes, calling callables on the way."""
    value = obj
    for name in path.split("__"):
        if value is None:
            return None
        value = getattr(value, name)
        if callable(value) and not isinstance(value, models.Manager):
            value = value()
    return value


def path_error(model: type[models.Model], path: str) -> str | None:
    """Why ``path`` cannot be read from instances of ``model``, or None when it can."""
    current: type[models.Model] | None = model
    for name in path.split("__"):
        if current is None:
            # Past a plain attribute (a method or property): nothing to check statically.
            return None
        try:
            field = current._meta.get_field(name)
        except FieldDoesNotExist:
            if hasattr(current, name):
                current = None
                continue
            return f"{current._meta.label} has no field or attribute {name!r}"
        current = field.related_model if field.is_relation else None  # type: ignore[assignment]
    return None


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, models.Model):
        return str(value.pk)
    return str(value)


class Catalog:
    """Reads products of the configured model through the field mapping."""

    def __init__(
        self,
        model: type[models.Model],
        fields: dict[str, str],
        queryset: Any = None,
    ) -> None:
        self.model = model
        self.fields = fields
        self._queryset = queryset

    def queryset(self) -> models.QuerySet:
        if self._queryset is not None:
            return self._queryset()
        return self.model._default_manager.all()

    def read(self, obj: models.Model, field: str) -> Any:
        path = self.fields.get(field)
        return resolve_path(obj, path) if path else None

    def item_key(self, obj: models.Model) -> str:
        return _as_text(self.read(obj, "key"))

    def category_key(self, obj: models.Model) -> str:
        return _as_text(self.read(obj, "category"))

    def as_item(self, obj: models.Model) -> CatalogItem:
        image = self.read(obj, "image")
        if isinstance(image, FieldFile):
            image = image.url if image.name else ""
        price = self.read(obj, "price")
        return CatalogItem(
            key=self.item_key(obj),
            title=_as_text(self.read(obj, "title")),
            category=self.category_key(obj),
            description=_as_text(self.read(obj, "description")),
            price=float(price) if price is not None else None,
            image_url=_as_text(image),
            url=_as_text(self.read(obj, "url")),
        )

    def valid_keys(self, keys: Iterable[Any]) -> list[Any]:
        """The keys the key field can hold; others (a word for an integer id, sent by an
        event from outside) cannot name a product and are left out instead of failing."""
        path = self.fields["key"].split("__")
        try:
            field = self.model._meta.get_field(path[0]) if len(path) == 1 else None
        except FieldDoesNotExist:
            field = None
        if field is None or not hasattr(field, "to_python"):
            return list(keys)
        valid = []
        for key in keys:
            try:
                valid.append(field.to_python(key))
            except (ValidationError, TypeError, ValueError):
                continue
        return valid

    def items(self, keys: Iterable[str] | None = None) -> Iterator[CatalogItem]:
        queryset = self.queryset()
        if keys is not None:
            queryset = queryset.filter(**{f"{self.fields['key']}__in": self.valid_keys(keys)})
        for obj in queryset.iterator(chunk_size=2000):
            yield self.as_item(obj)

    def get(self, key: str) -> CatalogItem | None:
        valid = self.valid_keys([key])
        if not valid:
            return None
        obj = self.queryset().filter(**{self.fields["key"]: valid[0]}).first()
        return self.as_item(obj) if obj is not None else None


def mapping_problems(config: Any) -> list[tuple[str, str]]:
    """Problems with an ``AIGC["CATALOG"]`` value as (option, message) pairs."""
    if config is None:
        return []
    if not isinstance(config, dict):
        return [("CATALOG", "must be a dict with MODEL and FIELDS")]
    unknown = set(config) - {"MODEL", "FIELDS", "QUERYSET"}
    if unknown:
        return [("CATALOG", f"unknown keys {sorted(unknown)}")]
    label = config.get("MODEL")
    try:
        model = apps.get_model(label) if isinstance(label, str) else None
    except (LookupError, ValueError):
        model = None
    if model is None:
        return [("CATALOG.MODEL", f"{label!r} is not an installed model ('app_label.Model')")]
    fields = config.get("FIELDS")
    if not isinstance(fields, dict):
        return [("CATALOG.FIELDS", "must be a dict of field name -> attribute path")]
    problems = []
    for name in REQUIRED_FIELDS:
        if not fields.get(name):
            problems.append((f"CATALOG.FIELDS.{name}", "is required"))
    for name, path in fields.items():
        if name not in REQUIRED_FIELDS + OPTIONAL_FIELDS:
            problems.append((f"CATALOG.FIELDS.{name}", "is not a catalog field"))
        elif not isinstance(path, str) or not path:
            problems.append((f"CATALOG.FIELDS.{name}", "must be a non-empty string"))
        elif error := path_error(model, path):
            problems.append((f"CATALOG.FIELDS.{name}", f"{path!r}: {error}"))
    if config.get("QUERYSET"):
        try:
            import_string(config["QUERYSET"])
        except ImportError as exc:
            problems.append(("CATALOG.QUERYSET", f"cannot be imported: {exc}"))
    return problems


@lru_cache(maxsize=1)
def get_catalog() -> Catalog | None:
    """The configured catalog, or None when ``AIGC["CATALOG"]`` is not set."""
    config = aigc_settings.CATALOG
    if config is None:
        return None
    problems = mapping_problems(config)
    if problems:
        option, message = problems[0]
        raise ImproperlyConfigured(f"AIGC {option} {message}")
    queryset = import_string(config["QUERYSET"]) if config.get("QUERYSET") else None
    return Catalog(apps.get_model(config["MODEL"]), dict(config["FIELDS"]), queryset)
