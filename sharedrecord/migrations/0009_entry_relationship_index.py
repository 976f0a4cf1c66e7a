"""An index for the relationships the feeds show, built without locking out ingestion.

CREATE INDEX CONCURRENTLY cannot run inside a transaction, so this migration
is not atomic; a deployment with a populated record keeps taking feeds while
it builds.
"""

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False
    dependencies = [
        ("sharedrecord", "0008_oauth_token_session"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="entry",
            index=models.Index(
                condition=models.Q(
                    (
                        "resource_type__in",
                        [
                            "Appointment",
                            "CarePlan",
                            "CareTeam",
                            "Condition",
                            "Encounter",
                            "Flag",
                            "ServiceRequest",
                        ],
                    )
                ),
                fields=["patient", "source_org", "resource_type", "effective_at"],
                include=("status", "updated_at"),
                name="entry_relationship",
            ),
        ),
    ]
