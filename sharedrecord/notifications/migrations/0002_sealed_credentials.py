"""Seal the kept credential at rest (sharedrecord/sealing.py)."""

from django.db import migrations

import sharedrecord.sealing


class Migration(migrations.Migration):
    dependencies = [
        ("notifications", "0001_events_notices_subscriptions"),
    ]

    operations = [
        migrations.AlterField(
            model_name="subscription",
            name="secret",
            field=sharedrecord.sealing.SealedTextField(),
        ),
        # Rows kept before sealing are sealed now (opened again if reversed).
        sharedrecord.sealing.column_sealing("notifications_subscription", "secret"),
    ]
