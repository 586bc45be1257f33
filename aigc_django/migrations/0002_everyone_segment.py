from django.db import migrations


def create_everyone(apps, schema_editor):
    Segment = apps.get_model("aigc_django", "Segment")
    Segment.objects.get_or_create(
        key="everyone",
        defaults={
            "name": "Everyone",
            "kind": "everyone",
            "description": "Every visitor, and the fallback for visitors in no other segment.",
        },
    )


class Migration(migrations.Migration):
    dependencies = [("aigc_django", "0001_initial")]

    operations = [migrations.RunPython(create_everyone, migrations.RunPython.noop)]
