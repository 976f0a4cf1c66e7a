import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

from audit.sql import (
    CHECKPOINTS,
    DROP_CHECKPOINTS,
    DROP_FINDINGS_APPEND_ONLY,
    FINDINGS_APPEND_ONLY,
)


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0003_record_holder_index"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RunSQL(CHECKPOINTS, DROP_CHECKPOINTS),
        migrations.CreateModel(
            name="AuditCheckpoint",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("taken_at", models.DateTimeField()),
                ("stripe", models.SmallIntegerField()),
                ("seq", models.BigIntegerField()),
                ("event_id", models.BigIntegerField()),
                ("hash", models.CharField(max_length=64)),
                ("events", models.BigIntegerField()),
                ("signature", models.CharField(max_length=64)),
            ],
            options={
                "db_table": "audit_checkpoint",
                "ordering": ["stripe", "-seq", "-id"],
                "managed": False,
            },
        ),
        # Findings become append-only. While Django still manages the table,
        # drop the foreign key to the reviewer (a TRUNCATE of the users table,
        # as Django's test flush does, would otherwise have to empty the
        # findings too), then hand the table over and guard it.
        migrations.AlterField(
            model_name="accessreview",
            name="reviewer",
            field=models.ForeignKey(
                db_constraint=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.AlterModelTable(name="accessreview", table="audit_accessreview"),
        migrations.AlterModelOptions(
            name="accessreview",
            options={"managed": False, "ordering": ["-reviewed_at", "-id"]},
        ),
        migrations.RunSQL(FINDINGS_APPEND_ONLY, DROP_FINDINGS_APPEND_ONLY),
    ]
