from django.apps import AppConfig


class IngestionConfig(AppConfig):
    name = "ingestion"
    verbose_name = "Feed ingestion"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # The opt-out purge must also reach what ingestion holds; optout may not
        # import ingestion, so ingestion hands it the function.
        from ingestion.purge import personal_data_purge
        from optout.services import optout_purger_register

        optout_purger_register(personal_data_purge)

        from ingestion.metrics import FeedCollector, FeedFreshnessCollector, ParkedCollector
        from sharedrecord.metrics import metrics_collector_register

        for collector in (FeedCollector(), ParkedCollector(), FeedFreshnessCollector()):
            metrics_collector_register(collector)
