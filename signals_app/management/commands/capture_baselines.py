import time
from datetime import UTC, datetime

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from signals_app.evaluation import (
    SEGMENTS,
    baseline_keys,
    capture_baselines,
    capture_window,
)
from signals_app.management.arguments import bounded, ids, moment
from signals_app.models import Environment, Route, Service, Signal

KNOWN_LISTED = 20  # names listed after an unknown one
MAX_MINUTES = 7 * 24 * 60  # as POST /api/v1/baselines/capture


class Command(BaseCommand):
    help = (
        "Capture baselines (count, p50, p95, p99, mean) of routes over a window: every route, "
        "or those of --service/--route; every signal unless --signal; production unless "
        "--environment; the all, hit and miss segments unless --segment. Each becomes the "
        "active baseline of its key, the previous one stays as history. One statistics query."
    )

    def add_arguments(self, parser):
        parser.add_argument("--service", action="append", default=[], metavar="SLUG")
        parser.add_argument("--route", action="append", type=int, default=[], metavar="ID")
        parser.add_argument("--signal", action="append", default=[], metavar="KEY")
        parser.add_argument("--environment", action="append", default=[], metavar="SLUG")
        parser.add_argument("--segment", action="append", choices=SEGMENTS, default=[])
        parser.add_argument(
            "--minutes",
            type=float,
            help=f"Window length before --end, 1 to {MAX_MINUTES} (default 60).",
        )
        parser.add_argument("--start", help="Window start (ISO 8601), exclusive.")
        parser.add_argument("--end", help="Window end (ISO 8601, default now).")
        parser.add_argument("--note", default="", help="Why this baseline was captured.")
        parser.add_argument(
            "--exclude-incidents",
            action="store_true",
            help="Leave out readings observed while an incident of the route was open.",
        )
        parser.add_argument("--user", help="Username recorded as captured_by.")

    def handle(self, *args, **options):
        started = time.perf_counter()
        minutes = bounded(
            "--minutes", options["minutes"], low=1, high=MAX_MINUTES, unit="minutes", example=60
        )
        window_start = moment("--start", options["start"])
        if window_start is not None and minutes is not None:
            # --minutes counts back from --end: with --start too, one of them was ignored.
            raise CommandError(
                "give either --start or --minutes, not both (--minutes counts back from --end); "
                f"received --start {options['start']} --minutes {options['minutes']:g}"
            )
        window_end = moment("--end", options["end"])
        # Every name and id must exist: a typo captures nothing and must not look like success.
        services = self._named(Service, "slug", options["service"])
        chosen = self._named(Route, "pk", ids("--route", options["route"]))
        routes = Route.objects.all()
        if services is not None:
            routes = routes.filter(service__in=services)
        if chosen is not None and services is not None:
            outside = {r.pk for r in chosen if r.service_id not in {s.pk for s in services}}
            if outside:
                raise CommandError(
                    f"route {', '.join(map(str, sorted(outside)))} is not a route of "
                    f"{', '.join(options['service'])}"
                )
        if chosen is not None:
            routes = routes.filter(pk__in=options["route"])
        routes = list(routes.only("pk"))
        signals = self._named(Signal, "key", options["signal"])
        environments = self._named(Environment, "slug", options["environment"])
        user = None
        if options["user"]:
            user = get_user_model().objects.filter(username=options["user"]).first()
            if user is None:
                raise CommandError(f"no user named {options['user']!r}")
        try:
            start, end = capture_window(start=window_start, end=window_end, minutes=minutes)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        keys = baseline_keys(
            routes,
            signals=signals,
            environments=environments,
            segments=options["segment"] or SEGMENTS,
        )
        result = capture_baselines(
            keys,
            start=start,
            end=end,
            user=user,
            note=options["note"],
            exclude_incidents=options["exclude_incidents"],
        )
        elapsed = (time.perf_counter() - started) * 1000
        self.stdout.write(
            f"captured {len(result.baselines)} baselines for {len(routes)} routes over "
            f"{_iso(start)} – {_iso(end)} ({len(result.skipped)} keys without readings "
            f"skipped) in {elapsed:.0f} ms"
        )

    def _named(self, model, field, names):
        if not names:
            return None
        found = list(model.objects.filter(**{f"{field}__in": names}))
        missing = set(names) - {getattr(obj, field) for obj in found}
        if missing:
            values = model.objects.order_by(field).values_list(field, flat=True)
            known = [str(v) for v in values[: KNOWN_LISTED + 1]]
            listed = ", ".join(known[:KNOWN_LISTED]) or "none"
            if len(known) > KNOWN_LISTED:
                listed += f", … ({values.count()} in all)"
            raise CommandError(
                f"unknown {model._meta.verbose_name} {', '.join(map(str, sorted(missing)))}; "
                f"known: {listed}"
            )
        return found


def _iso(moment: datetime):
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
