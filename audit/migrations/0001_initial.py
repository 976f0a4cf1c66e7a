from django.db import migrations

from audit.sql import CREATE, DROP


class Migration(migrations.Migration):
    initial = True
    dependencies: list[tuple[str, str]] = []

    operations = [
        migrations.RunSQL(CREATE, DROP),
        migrations.CreateModel(
            name="AuditEvent",
            fields=[],
            options={
                "managed": False,
                "db_table": "audit_event",
                "ordering": ["-occurred_at", "-id"],
            },
        ),
        migrations.CreateModel(
            name="AuditChainHead",
            fields=[],
            options={"managed": False, "db_table": "audit_chain_head"},
        ),
    ]
