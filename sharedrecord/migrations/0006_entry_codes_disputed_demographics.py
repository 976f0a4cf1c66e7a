"""Every coding of an entry (for sensitivity by code), and disputed demographics.

The backfill computes the codes of stored entries in SQL, the same set
ingestion.fhir.codes_of computes for new ones. It runs outside one big
transaction, a batch of ids at a time, so a populated record is not locked
whole (ingestion goes on between batches) and no single transaction rewrites
the whole table.
"""

import django.contrib.postgres.fields
from django.db import migrations, models

BATCH = 20_000
BACKFILL_SQL = """
UPDATE sharedrecord_entry SET codes = ARRAY(
    SELECT DISTINCT left(coalesce(c ->> 'system', '') || '|' || (c ->> 'code'), 300)
    FROM jsonb_path_query(resource, 'strict $.**.coding[*]') AS c
    WHERE jsonb_typeof(c) = 'object' AND c ? 'code'
    ORDER BY 1)
WHERE id >= %s AND id < %s
"""


def backfill_codes(apps, schema_editor):
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT coalesce(min(id), 0), coalesce(max(id), -1) FROM sharedrecord_entry")
        low, high = cursor.fetchone()
        for start in range(low, high + 1, BATCH):
            cursor.execute(BACKFILL_SQL, [start, start + BATCH])


class Migration(migrations.Migration):
    atomic = False
    dependencies = [
        ("sharedrecord", "0005_roles_kinds_registration"),
    ]

    operations = [
        migrations.AddField(
            model_name="entry",
            name="codes",
            field=django.contrib.postgres.fields.ArrayField(
                base_field=models.CharField(max_length=300), blank=True, default=list, size=None
            ),
        ),
        migrations.AddField(
            model_name="patient",
            name="demographics_disputed",
            field=django.contrib.postgres.fields.ArrayField(
                base_field=models.CharField(max_length=16), blank=True, default=list, size=None
            ),
        ),
        migrations.RunPython(backfill_codes, migrations.RunPython.noop),
    ]
