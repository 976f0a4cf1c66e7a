from django.db import migrations

from audit.sql import DROP_NEEDS_REVIEW_INDEX, NEEDS_REVIEW_INDEX


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0004_checkpoints_and_append_only_findings"),
    ]

    operations = [
        migrations.RunSQL(NEEDS_REVIEW_INDEX, DROP_NEEDS_REVIEW_INDEX),
    ]
