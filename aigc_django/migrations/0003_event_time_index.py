"""The index behind time-range scans of events (retention purges).

BRIN on PostgreSQL: events arrive in time order, so a block-range index answers range scans
well and costs a fraction of a B-tree to maintain on every write. A B-tree elsewhere.
"""

from django.db import migrations

INDEX = "aigc_event_time"


def create_index(apps, schema_editor):
    table = schema_editor.quote_name("aigc_django_event")
    using = "USING brin " if schema_editor.connection.vendor == "postgresql" else ""
    schema_editor.execute(f"CREATE INDEX {INDEX} ON {table} {using}(occurred_at)")


def drop_index(apps, schema_editor):
    on_table = " ON aigc_django_event" if schema_editor.connection.vendor == "mysql" else ""
    schema_editor.execute(f"DROP INDEX {INDEX}{on_table}")


class Migration(migrations.Migration):
    dependencies = [("aigc_django", "0002_everyone_segment")]

    operations = [migrations.RunPython(create_index, drop_index)]
