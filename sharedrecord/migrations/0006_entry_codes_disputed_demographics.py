"""Every coding of an entry (for sensitivity by code), and disputed demographics.

The backfill computes the codes of stored entries in SQL, the same set
ingestion.fhir.codes_of computes for new ones.
"""

import django.contrib.postgres.fields
from django.db import migrations, models


class Migration(migrations.Migration):
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
        migrations.RunSQL(
            sql="""
            UPDATE sharedrecord_entry SET codes = ARRAY(
                SELECT DISTINCT left(coalesce(c ->> 'system', '') || '|' || (c ->> 'code'), 300)
                FROM jsonb_path_query(resource, 'strict $.**.coding[*]') AS c
                WHERE jsonb_typeof(c) = 'object' AND c ? 'code'
                ORDER BY 1)
            """,
            reverse_sql=migrations.RunSQL.noop,
        ),
    ]
