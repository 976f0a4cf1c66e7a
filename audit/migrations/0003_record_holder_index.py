from django.db import migrations, models

from audit.sql import DROP_HOLDER_INDEX, HOLDER_INDEX


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0002_access_review"),
    ]

    operations = [
        migrations.RunSQL(HOLDER_INDEX, DROP_HOLDER_INDEX),
        migrations.CreateModel(
            name="AuditEventHolder",
            fields=[
                (
                    "pk",
                    models.CompositePrimaryKey(
                        "holder_ods",
                        "occurred_at",
                        "event_id",
                        blank=True,
                        editable=False,
                        primary_key=True,
                        serialize=False,
                    ),
                ),
                ("holder_ods", models.CharField(max_length=12)),
                ("occurred_at", models.DateTimeField()),
            ],
            options={
                "db_table": "audit_event_holder",
                "managed": False,
            },
        ),
    ]
