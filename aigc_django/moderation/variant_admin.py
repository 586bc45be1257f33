"""The variant review queue: a changelist of generated variants and a review page per variant.

The changelist (``/admin/aigc_django/variant/``) lists pending, flagged variants first, with
bulk actions to approve, reject, archive and regenerate. The change page
(``/admin/aigc_django/variant/<id>/change/``) is the review page: the banner at real size
in every rendition, the copy as the slot shows it, the live variants of the same slot and
segment, the history, and the decision buttons. Decisions go through
``aigc_django.moderation.review``; only users with the ``aigc_django.review_variant``
permission may make them (others may look).
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.core.files.storage import default_storage
from django.db.models import Case, IntegerField, Q, QuerySet, Value, When
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html
from django.utils.text import Truncator, smart_split, unescape_string_literal
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext

from aigc_django.models import Slot, Variant
from aigc_django.moderation import review

Status = Variant.Status
STATUS_COLOURS = {
    Status.PENDING: "#b45309",
    Status.APPROVED: "#15803d",
    Status.REJECTED: "#b91c1c",
    Status.ARCHIVED: "#6b7280",
}
THUMBNAIL_WIDTH = 120
# The decisions of the review page, in the order of their buttons: (action, button text).
DECISIONS = [
    ("approve", gettext_lazy("Approve")),
    ("reject", gettext_lazy("Reject")),
    ("archive", gettext_lazy("Archive")),
    ("regenerate", gettext_lazy("Regenerate")),
]
DECIDE = {
    "approve": review.approve,
    "reject": review.reject,
    "archive": review.archive,
}


def file_url(name: str) -> str:
    return default_storage.url(name)


def smallest_rendition(variant: Variant) -> dict | None:
    """The smallest file of the first size, preferring the WebP master format."""
    renditions = variant.renditions_in_order()
    if not renditions:
        return None
    files = renditions[0][1].get("files") or []
    if not files:
        return None
    webp = [f for f in files if str(f.get("format", "")).upper() == "WEBP"] or files
    return min(webp, key=lambda f: int(f.get("width") or 0))


def copy_excerpt(variant: Variant, length: int = 60) -> str:
    copy = variant.copy or {}
    text = copy.get("headline") or next((str(v) for v in copy.values() if v), "")
    return Truncator(str(text)).chars(length)


def thumbnail_html(variant: Variant) -> str:
    """An <img> of the smallest rendition, or an excerpt of the copy for copy slots."""
    file = smallest_rendition(variant)
    if file is None:
        return format_html('<span class="aigc-excerpt">{}</span>', copy_excerpt(variant, 80))
    width = int(file.get("width") or THUMBNAIL_WIDTH)
    height = int(file.get("height") or 0)
    shown_height = round(height * THUMBNAIL_WIDTH / width) if width and height else None
    return format_html(
        '<img class="aigc-thumb" src="{}" width="{}"{} alt="{}" loading="lazy">',
        file_url(file["name"]),
        THUMBNAIL_WIDTH,
        format_html(' height="{}"', shown_height) if shown_height else "",
        variant.alt_text or copy_excerpt(variant),
    )


def provenance_summary(variant: Variant) -> str:
    """ "copy: backend/model v1 · image: backend v1 · seed 123" from the provenance."""
    provenance = variant.provenance or {}
    parts = []
    for kind in ("copy", "image"):
        entry = provenance.get(kind)
        if not isinstance(entry, dict):
            continue
        name = str(entry.get("backend") or "?")
        model = entry.get("model")
        if model and model != name:
            name = f"{name}/{model}"
        if entry.get("version"):
            name = f"{name} v{entry['version']}"
        parts.append(f"{kind}: {name}")
    seed = (provenance.get("copy") or {}).get("seed") if isinstance(provenance, dict) else None
    if seed is not None:
        parts.append(f"seed {seed}")
    return " · ".join(parts) or "—"


def safety_flags(variant: Variant) -> list[dict]:
    return [f for f in (variant.safety or {}).get("flags") or [] if isinstance(f, dict)]


class FlaggedFilter(admin.SimpleListFilter):
    title = gettext_lazy("safety")
    parameter_name = "flagged"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", _("Flagged")), ("no", _("Not flagged"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "yes":
            return queryset.filter(safety__ok=False)
        if self.value() == "no":
            return queryset.exclude(safety__ok=False)
        return queryset


class BackendFilter(admin.SimpleListFilter):
    title = gettext_lazy("backend")
    parameter_name = "backend"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        names: set[str] = set()
        for kind in ("copy", "image"):
            names.update(
                str(name)
                for name in Variant.objects.values_list(f"provenance__{kind}__backend", flat=True)
                .order_by()
                .distinct()
                if name
            )
        return [(name, name) for name in sorted(names)]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value():
            return queryset.filter(
                Q(provenance__copy__backend=self.value())
                | Q(provenance__image__backend=self.value())
            )
        return queryset


@admin.register(Variant)
class VariantAdmin(admin.ModelAdmin):
    """The review queue. Variants come from generation only: no add; delete for superusers."""

    list_display = (
        "thumbnail",
        "headline",
        "slot",
        "segment",
        "status_badge",
        "flags",
        "made_by",
        "created_at",
    )
    list_display_links = ("thumbnail", "headline")
    list_filter = ("status", "slot", "segment", FlaggedFilter, "edited", BackendFilter)
    # The copy is searched too (field by field, see get_search_results).
    search_fields = ("slot__key", "segment__key")
    search_help_text = gettext_lazy("Search the copy, the slot key and the segment key.")
    list_select_related = ("slot", "segment")
    list_per_page = 50
    actions = ["approve_selected", "reject_selected", "archive_selected", "regenerate_selected"]
    change_form_template = "admin/aigc_django/variant/review.html"

    # Permissions ------------------------------------------------------------------------------

    def has_review_permission(self, request: HttpRequest) -> bool:
        """May approve, reject, archive, regenerate and edit: ``aigc_django.review_variant``."""
        return request.user.has_perm(f"{self.opts.app_label}.review_variant")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Variant | None = None) -> bool:
        return self.has_review_permission(request)

    def has_view_permission(self, request: HttpRequest, obj: Variant | None = None) -> bool:
        return super().has_view_permission(request, obj) or self.has_review_permission(request)

    def has_delete_permission(self, request: HttpRequest, obj: Variant | None = None) -> bool:
        return bool(request.user.is_active and request.user.is_superuser)

    # The list --------------------------------------------------------------------------------

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        # ModelAdmin.get_queryset orders before annotating; the order needs the annotation.
        return (
            self.model._default_manager.get_queryset()
            .annotate(
                queue_rank=Case(
                    When(status=Status.PENDING, safety__ok=False, then=Value(0)),
                    When(status=Status.PENDING, then=Value(1)),
                    default=Value(2),
                    output_field=IntegerField(),
                )
            )
            .order_by(*self.get_ordering(request))
        )

    def get_ordering(self, request: HttpRequest) -> list[str]:
        # Pending and flagged first: what most needs an editor's eye.
        return ["queue_rank", "-created_at"]

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        """Every word must appear in a copy field, the slot key or the segment key."""
        from aigc_django.generation.service import DEFAULT_FIELDS

        names = set(DEFAULT_FIELDS)
        for fields in Slot.objects.values_list("copy_fields", flat=True):
            if isinstance(fields, dict):
                names.update(str(n) for n in fields)
        names = {n for n in names if n.isidentifier() and "__" not in n}
        for bit in smart_split(search_term):
            if bit.startswith(('"', "'")) and bit[0] == bit[-1]:
                bit = unescape_string_literal(bit)
            if not bit:
                continue
            match = Q(slot__key__icontains=bit) | Q(segment__key__icontains=bit)
            for name in names:
                match |= Q(**{f"copy__{name}__icontains": bit})
            queryset = queryset.filter(match)
        return queryset, False

    @admin.display(description=gettext_lazy("banner"))
    def thumbnail(self, variant: Variant) -> str:
        return thumbnail_html(variant)

    @admin.display(description=gettext_lazy("headline"))
    def headline(self, variant: Variant) -> str:
        return copy_excerpt(variant) or "—"

    @admin.display(description=gettext_lazy("status"), ordering="status")
    def status_badge(self, variant: Variant) -> str:
        # The hidden version lets the bulk actions detect a change made since the list loaded.
        return format_html(
            '<span class="aigc-status aigc-status-{}" style="background:{};color:#fff;'
            'padding:2px 6px;border-radius:8px;white-space:nowrap">{}</span>{}'
            '<input type="hidden" name="_version_{}" value="{}">',
            variant.status,
            STATUS_COLOURS.get(variant.status, "#6b7280"),
            variant.get_status_display(),
            format_html(' <span class="aigc-edited">{}</span>', _("edited"))
            if variant.edited
            else "",
            variant.pk,
            variant.version,
        )

    @admin.display(description=gettext_lazy("safety flags"))
    def flags(self, variant: Variant) -> str:
        flags = safety_flags(variant)
        if not (variant.safety or {}):
            return _("not checked")
        if not flags and variant.safety.get("ok") is not False:
            return format_html('<span class="aigc-safe" style="color:#15803d">{}</span>', _("ok"))
        codes = ", ".join(sorted({str(f.get("code", "?")) for f in flags}))
        return format_html(
            '<span class="aigc-flagged" style="color:#b91c1c;font-weight:bold">{} {}</span>',
            len(flags),
            codes or _("flagged"),
        )

    @admin.display(description=gettext_lazy("provenance"))
    def made_by(self, variant: Variant) -> str:
        return provenance_summary(variant)

    # Bulk actions ----------------------------------------------------------------------------

    def _expected_version(self, request: HttpRequest, variant: Variant) -> int | None:
        value = request.POST.get(f"_version_{variant.pk}")
        try:
            return int(value) if value is not None else None
        except ValueError:
            return None

    def _bulk(self, request: HttpRequest, queryset: QuerySet, action: str) -> None:
        done = 0
        problems: list[str] = []
        for variant in queryset.select_related("slot", "segment"):
            expected = self._expected_version(request, variant)
            try:
                if action == "regenerate":
                    review.regenerate(variant, request.user, expected_version=expected)
                else:
                    DECIDE[action](variant, request.user, expected_version=expected)
                done += 1
            except review.ReviewConflict as exc:
                problems.append(_("Variant #%(pk)s: %(error)s") % {"pk": variant.pk, "error": exc})
            except review.ReviewError as exc:
                problems.append(str(exc))
        messages_for = {
            "approve": ngettext("%d variant approved.", "%d variants approved.", done),
            "reject": ngettext("%d variant rejected.", "%d variants rejected.", done),
            "archive": ngettext("%d variant archived.", "%d variants archived.", done),
            "regenerate": ngettext(
                "%d variant archived; a replacement is being generated.",
                "%d variants archived; a replacement for each is being generated.",
                done,
            ),
        }
        if done:
            self.message_user(request, messages_for[action] % done, messages.SUCCESS)
        for problem in problems:
            self.message_user(request, problem, messages.WARNING)

    @admin.action(description=gettext_lazy("Approve selected variants"), permissions=["review"])
    def approve_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._bulk(request, queryset, "approve")

    @admin.action(description=gettext_lazy("Reject selected variants"), permissions=["review"])
    def reject_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._bulk(request, queryset, "reject")

    @admin.action(description=gettext_lazy("Archive selected variants"), permissions=["review"])
    def archive_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._bulk(request, queryset, "archive")

    @admin.action(description=gettext_lazy("Regenerate selected variants"), permissions=["review"])
    def regenerate_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._bulk(request, queryset, "regenerate")

    # The review page -------------------------------------------------------------------------

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict | None = None,
    ) -> HttpResponse:
        """The review page; its POSTs are the decisions and copy edits (``action`` names one)."""
        variant = self.get_object(request, unquote(object_id))
        if variant is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not self.has_view_or_change_permission(request, variant):
            raise PermissionDenied
        if request.method == "POST":
            if not self.has_review_permission(request):
                raise PermissionDenied
            return self.review_post(request, variant)
        return self.render_review_page(request, variant)

    def review_post(self, request: HttpRequest, variant: Variant) -> HttpResponse:
        action = request.POST.get("action", "")
        try:
            version = int(request.POST.get("version", ""))
        except ValueError:
            return HttpResponseBadRequest(_("The form carries no variant version: reload."))
        note = request.POST.get("note", "")[:2000]
        page = reverse(f"{self.admin_site.name}:aigc_django_variant_change", args=[variant.pk])
        if action == "save_copy":
            return self.save_copy(request, variant, version, page)
        if action not in {name for name, _label in DECISIONS}:
            return HttpResponseBadRequest(_("Unknown action %(action)r.") % {"action": action})
        try:
            if action == "regenerate":
                _review, job = review.regenerate(variant, request.user, note, version)
                text = _(
                    "Variant #%(pk)s archived; a replacement is being generated (job #%(job)s)."
                ) % {"pk": variant.pk, "job": job.pk}
            else:
                DECIDE[action](variant, request.user, note, version)
                text = _("Variant #%(pk)s %(verb)s.") % {
                    "pk": variant.pk,
                    "verb": review.VERBS[action],
                }
        except review.ReviewConflict as exc:
            # Shown with the page as it is now; the editor's note stays in the form.
            self.message_user(request, str(exc), messages.ERROR)
            return self.render_review_page(request, exc.variant, note=note, status=409)
        except review.ReviewError as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return HttpResponseRedirect(page)
        self.message_user(request, text, messages.SUCCESS)
        return HttpResponseRedirect(page)

    def save_copy(
        self, request: HttpRequest, variant: Variant, version: int, page: str
    ) -> HttpResponse:
        from aigc_django.generation.service import slot_fields

        copy = {
            name: request.POST[f"copy_{name}"]
            for name in slot_fields(variant.slot)
            if f"copy_{name}" in request.POST
        }
        try:
            result = review.edit_copy(variant, request.user, copy, version)
        except review.InvalidCopy as exc:
            return self.render_review_page(request, variant, copy=copy, copy_errors=exc.errors)
        except review.ReviewConflict as exc:
            self.message_user(
                request,
                str(exc) + " " + _("Your copy is still in the form: save it again to replace it."),
                messages.ERROR,
            )
            return self.render_review_page(request, exc.variant, copy=copy, status=409)
        except review.ReviewError as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return HttpResponseRedirect(page)
        if result is None:
            self.message_user(request, _("The copy is unchanged."), messages.INFO)
        else:
            self.message_user(
                request,
                _("Copy saved. The banner is being drawn again; the variant needs approval again."),
                messages.SUCCESS,
            )
        return HttpResponseRedirect(page)

    def render_review_page(
        self,
        request: HttpRequest,
        variant: Variant,
        *,
        note: str = "",
        copy: dict[str, str] | None = None,
        copy_errors: dict[str, str] | None = None,
        status: int = 200,
    ) -> HttpResponse:
        from aigc_django.generation.service import slot_fields

        variant = Variant.objects.select_related("slot", "segment", "job").get(pk=variant.pk)
        can_review = self.has_review_permission(request)
        copy_values = {**(variant.copy or {}), **(copy or {})}
        copy_errors = copy_errors or {}
        fields = [
            {
                "name": name,
                "label": name.replace("_", " ").capitalize(),
                "limit": limit,
                "value": str(copy_values.get(name, "")),
                "multiline": limit > 80,
                "error": copy_errors.get(name, ""),
            }
            for name, limit in slot_fields(variant.slot).items()
        ]
        live = (
            Variant.objects.filter(
                slot=variant.slot, segment=variant.segment, status=Status.APPROVED
            )
            .exclude(pk=variant.pk)
            .order_by("-reviewed_at", "-created_at")
        )
        decisions = [
            (name, label)
            for name, label in DECISIONS
            if variant.status in review.ALLOWED_FROM[name]
        ]
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "app_label": self.opts.app_label,
            "title": _("Review variant #%(pk)s") % {"pk": variant.pk},
            "subtitle": None,
            "original": variant,
            "variant": variant,
            "has_view_permission": self.has_view_permission(request, variant),
            "has_delete_permission": self.has_delete_permission(request, variant),
            "can_review": can_review,
            "status_colour": STATUS_COLOURS.get(variant.status, "#6b7280"),
            "renditions": self.rendition_rows(variant),
            "mock": [
                (name, str((variant.copy or {}).get(name, "")))
                for name in slot_fields(variant.slot)
            ],
            "fields": fields,
            "copy_has_errors": bool(copy_errors),
            "flags": safety_flags(variant),
            "provenance_rows": self.provenance_rows(variant),
            "live": [
                {"variant": v, "thumbnail": thumbnail_html(v), "excerpt": copy_excerpt(v)}
                for v in live[:12]
            ],
            "history": [
                {
                    "review": r,
                    "who": review.reviewer_name(r.reviewer)
                    if r.reviewer_id or r.action == review.Action.AUTO_APPROVE
                    else _("a deleted user"),
                    "before": Status(r.status_before).label
                    if r.status_before in Status.values
                    else r.status_before,
                    "after": Status(r.status_after).label
                    if r.status_after in Status.values
                    else r.status_after,
                }
                for r in variant.reviews.select_related("reviewer")
            ],
            "decisions": decisions if can_review else [],
            "note": note,
            "next_pending": self.next_pending(request, variant),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, self.change_form_template, context, status=status)

    def rendition_rows(self, variant: Variant) -> list[dict]:
        rows = []
        for label, entry in variant.renditions_in_order():
            files = [
                {
                    "url": file_url(f["name"]),
                    "name": f["name"],
                    "width": f.get("width"),
                    "height": f.get("height"),
                    "format": f.get("format", ""),
                }
                for f in entry.get("files") or []
                if f.get("name")
            ]
            rows.append({"label": label, "files": files})
        return rows

    def provenance_rows(self, variant: Variant) -> list[tuple[str, str]]:
        provenance = variant.provenance or {}
        rows: list[tuple[str, str]] = [(_("summary"), provenance_summary(variant))]
        for kind in ("copy", "image"):
            entry = provenance.get(kind)
            if isinstance(entry, dict) and entry.get("brief_hash"):
                rows.append((_("%(kind)s brief hash") % {"kind": kind}, entry["brief_hash"]))
        if provenance.get("job") is not None:
            rows.append(
                (_("job"), f"#{provenance['job']}, position {provenance.get('position', '?')}")
            )
        if provenance.get("products"):
            rows.append((_("products"), ", ".join(str(p) for p in provenance["products"])))
        rows.append((_("version"), str(variant.version)))
        return rows

    def next_pending(self, request: HttpRequest, variant: Variant) -> Variant | None:
        return (
            self.get_queryset(request)
            .filter(status=Status.PENDING)
            .exclude(pk=variant.pk)
            .order_by("queue_rank", "-created_at", "-pk")
            .first()
        )
