"""Every stage of the pipeline on this machine, in order, for the demo."""

from __future__ import annotations

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = (
        "Prepare the demo: catalog and slots, simulated shoppers, profiles and segments, "
        "the copy model trained on this shop's text, and pending variants for every "
        "(slot, segment) cell. Safe to run again."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--visitors", type=int, default=800)
        parser.add_argument("--epochs", type=int, help="Copy-model epochs (default: its own).")
        parser.add_argument(
            "--editor-password",
            default="editor-demo",
            help='Password of the demo editor account "editor" (local demos only).',
        )

    def handle(
        self, *args, visitors: int, epochs: int | None, editor_password: str, **options
    ) -> None:
        steps = [
            ("catalog", "seed_catalog", [], {}),
            ("slots", "seed_slots", [], {}),
            ("shoppers and segments", "simulate_traffic", ["--visitors", str(visitors)], {}),
            ("copy model", "aigc_train", ["--epochs", str(epochs)] if epochs else [], {}),
            ("variants", "aigc_generate", [], {}),
        ]
        for number, (title, command, arguments, kwargs) in enumerate(steps, 1):
            self.stdout.write(self.style.MIGRATE_HEADING(f"{number}/{len(steps)} {title}"))
            call_command(command, *arguments, stdout=self.stdout, stderr=self.stderr, **kwargs)
        self.make_editor(editor_password)
        self.stdout.write(
            self.style.SUCCESS(
                "Done. Open /generated/ to see the pending variants, and /admin/ (user "
                f"'editor', password '{editor_password}') to review them."
            )
        )

    def make_editor(self, password: str) -> None:
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
