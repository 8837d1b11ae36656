from django.apps import AppConfig
from django.db.models.signals import pre_delete


class SignalsAppConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "signals_app"
    verbose_name = "Data quality signals"

    def ready(self):
        from .evaluation import wait_for_evaluation
        from .models import Incident, Threshold
        from .notifications import record_incident_deleted

        pre_delete.connect(
            wait_for_evaluation, sender=Threshold, dispatch_uid="threshold-waits-for-evaluation"
        )
        pre_delete.connect(
            record_incident_deleted, sender=Incident, dispatch_uid="incident-deleted-notified"
        )
