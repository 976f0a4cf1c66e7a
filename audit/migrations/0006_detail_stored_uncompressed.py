from django.db import migrations

from audit.sql import DETAIL_STORAGE_EXTENDED, DETAIL_STORAGE_EXTERNAL


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0005_needs_review_index"),
    ]

    operations = [
        migrations.RunSQL(DETAIL_STORAGE_EXTERNAL, DETAIL_STORAGE_EXTENDED),
    ]
