from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from signals_app.management.arguments import bounded, text
from signals_app.models import Service, ServiceKey

MAX_EXPIRES_IN_DAYS = 3650  # ten years; leave the option out for a key that never expires


class Command(BaseCommand):
    help = (
        "Issue an API key for a service. The key is shown once, alone on the last line; "
        "only a hash of its secret is stored."
    )

    def add_arguments(self, parser):
        parser.add_argument("service", help="slug of the service")
        parser.add_argument("--name", default="", help="what the key is for, e.g. web-1")
        parser.add_argument(
            "--expires-in-days", type=int, default=None, help="expire the key after N days"
        )

    def handle(self, *args, service, name, expires_in_days, **options):
        name = text("--name", name, max_length=ServiceKey._meta.get_field("name").max_length)
        bounded(
            "--expires-in-days",
            expires_in_days,
            low=1,
            high=MAX_EXPIRES_IN_DAYS,
            unit="days",
            example=90,
        )
        try:
            target = Service.objects.get(slug=service)
        except Service.DoesNotExist:
            known = ", ".join(Service.objects.values_list("slug", flat=True)[:20]) or "none"
            raise CommandError(f"no service {service!r}; known services: {known}") from None
        expires_at = timezone.now() + timedelta(days=expires_in_days) if expires_in_days else None
        key, raw = ServiceKey.issue(target, name=name, expires_at=expires_at)
        self.stderr.write(
            f"Issued key dq_{key.prefix}… for service {target.slug}"
            + (f", expires {expires_at:%Y-%m-%d %H:%M} UTC" if expires_at else "")
            + ". Store it now: it cannot be shown again."
        )
        self.stdout.write(raw)
