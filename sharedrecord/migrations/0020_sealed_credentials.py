"""Seal the kept credential at rest (sharedrecord/sealing.py)."""

from django.db import migrations

import sharedrecord.sealing


class Migration(migrations.Migration):
    dependencies = [
        ("sharedrecord", "0019_organisation_phone"),
    ]

    operations = [
        migrations.AlterField(
            model_name="launchsystem",
            name="smart_client_secret",
            field=sharedrecord.sealing.SealedTextField(blank=True),
        ),
        # Rows kept before sealing are sealed now (opened again if reversed).
        sharedrecord.sealing.column_sealing("sharedrecord_launchsystem", "smart_client_secret"),
    ]
