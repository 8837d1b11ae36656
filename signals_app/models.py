"""The domain of dq-registry (DESIGN.md §Domain).

Readings are the only large table: nothing points at a reading, so it can be
partitioned by time and pruned later.
"""

import functools
import hashlib
import math
import operator
import secrets
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, URLValidator
from django.db import models, transaction
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone
from simple_history.models import HistoricalRecords

# The times people and services give (a change's applied_at, a rehearsal's rehearsed_at, a
# reading's observed_at): nothing here happened before 2000, and a date of year 1 or 1970 (a
# clock that was never set) overflowed `applied_at - 60 minutes` on every page showing it.
EARLIEST_TIME = datetime(2000, 1, 1, tzinfo=UTC)
LATEST_TIME = datetime(2100, 1, 1, tzinfo=UTC)
# How far ahead of ours another clock may be for a time that has already happened.
CLOCK_SKEW = timedelta(minutes=5)


def validate_plausible_time(value):
    """From 2000-01-01 to 2100-01-01 UTC (a planned change may lie ahead)."""
    if value is not None and not EARLIEST_TIME <= value < LATEST_TIME:
        raise ValidationError(
            "must be from 2000-01-01 to 2100-01-01 (UTC); received %(value)s",
            code="out_of_range",
            params={"value": value.isoformat()},
        )


def validate_past_time(value):
    """From 2000-01-01 UTC to now (with CLOCK_SKEW): a time that has already happened."""
    latest = timezone.now() + CLOCK_SKEW
    if value is not None and not EARLIEST_TIME <= value <= latest:
        raise ValidationError(
            "must be from 2000-01-01 (UTC) to now (at most 5 minutes ahead); received %(value)s",
            code="out_of_range",
            params={"value": value.isoformat()},
        )


class Owner(models.Model):
    """A team or person who answers for routes; members may edit what it owns."""

    name = models.CharField(max_length=200, unique=True)
    contact_email = models.EmailField(blank=True)
    # Where incident notifications are POSTed (signals_app.notifications): HTTP(S) only, as
    # delivery can send nothing else (ftp:// failed only when an incident opened).
    webhook_url = models.URLField(
        blank=True,
        validators=[URLValidator(schemes=["http", "https"])],
        help_text="http(s) URL that receives incident notifications (POST, JSON).",
    )
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="owners")

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name


class Service(models.Model):
    slug = models.SlugField(max_length=100, unique=True)
    name = models.CharField(max_length=200, blank=True)
    owner = models.ForeignKey(Owner, on_delete=models.PROTECT, related_name="services")
    base_url = models.URLField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["slug"]

    def __str__(self):
        return self.slug


class ServiceKey(models.Model):
    """An API key of a service: `dq_<prefix>.<secret>`; only a hash of the secret is kept."""

    PREFIX_LENGTH = 12

    service = models.ForeignKey(Service, on_delete=models.CASCADE, related_name="keys")
    name = models.CharField(max_length=100, blank=True)
    prefix = models.CharField(max_length=32, unique=True)
    secret_hash = models.CharField(max_length=128)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    last_used_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["service", "-created_at"]

    def __str__(self):
        return f"{self.service.slug} dq_{self.prefix}…"

    @staticmethod
    def hash_secret(secret):
        return hashlib.sha256(secret.encode()).hexdigest()

    @classmethod
    def issue(cls, service, *, name="", created_by=None, expires_at=None):
        """Create a key and return (key, full key string); the string is shown once."""
        prefix = secrets.token_hex(cls.PREFIX_LENGTH // 2)
        secret = secrets.token_urlsafe(32)
        key = cls.objects.create(
            service=service,
            name=name,
            prefix=prefix,
            secret_hash=cls.hash_secret(secret),
            created_by=created_by,
            expires_at=expires_at,
        )
        return key, f"dq_{prefix}.{secret}"

    def matches(self, secret):
        return secrets.compare_digest(self.secret_hash, self.hash_secret(secret))

    @classmethod
    def authenticate(cls, raw_key):
        """The active key for a `dq_<prefix>.<secret>` string, or (None, why it was refused).

        One query by prefix (unique index); the secret is compared in constant time, and an
        unknown prefix still costs one hash so timing does not tell prefixes apart.
        """
        prefix, _, secret = raw_key.removeprefix("dq_").partition(".")
        key = None
        if raw_key.startswith("dq_") and prefix and secret and len(prefix) <= 32:
            key = cls.objects.select_related("service").filter(prefix=prefix).first()
        if key is None or not key.matches(secret):
            cls.hash_secret(secret)
            return None, "the API key is unknown"
        if key.revoked_at is not None:
            return None, "the API key was revoked"
        if key.expires_at is not None and key.expires_at <= timezone.now():
            return None, "the API key has expired"
        return key, ""

    def touch(self, now=None):
        """Record use at most once a minute per key, whatever the number of workers.

        The UPDATE is conditional, so concurrent requests write the row once; a request
        whose loaded key was used less than a minute ago issues no query at all.
        """
        now = now or timezone.now()
        cutoff = now - timedelta(minutes=1)
        if self.last_used_at is not None and self.last_used_at > cutoff:
            return
        ServiceKey.objects.filter(pk=self.pk).filter(
            Q(last_used_at__isnull=True) | Q(last_used_at__lte=cutoff)
        ).update(last_used_at=now)
        self.last_used_at = now

    @property
    def is_active(self):
        if self.revoked_at is not None:
            return False
        return self.expires_at is None or self.expires_at > timezone.now()


class Environment(models.Model):
    slug = models.SlugField(max_length=50, unique=True)
    name = models.CharField(max_length=100, blank=True)
    is_production = models.BooleanField(default=False)

    class Meta:
        ordering = ["-is_production", "slug"]

    def __str__(self):
        return self.slug


class RouteQuerySet(models.QuerySet):
    def owned_by(self, user):
        """Routes whose Owner has `user` as a member (superusers: all)."""
        if user.is_superuser:
            return self
        return self.filter(owner__members=user)

    def with_last_rehearsal(self):
        """Annotate `last_rehearsed_at`: the latest passed rehearsal of a rollback note."""
        return self.annotate(
            last_rehearsed_at=models.Max(
                "rollback_notes__rehearsed_at",
                filter=Q(rollback_notes__rehearsal_outcome=RollbackNote.Outcome.PASSED),
            )
        )

    def rehearsal_missing(self):
        """Routes with no rollback note rehearsed (and passed) in staging."""
        return self.with_last_rehearsal().filter(last_rehearsed_at__isnull=True)

    def rehearsal_stale(self, max_age_days):
        """Routes whose last passed rehearsal is older than `max_age_days`."""
        cutoff = timezone.now() - timedelta(days=max_age_days)
        return self.with_last_rehearsal().filter(last_rehearsed_at__lt=cutoff)

    def rehearsal_due(self, max_age_days):
        """Routes needing a rehearsal: none passed yet, or the last one is too old."""
        cutoff = timezone.now() - timedelta(days=max_age_days)
        return self.with_last_rehearsal().filter(
            Q(last_rehearsed_at__isnull=True) | Q(last_rehearsed_at__lt=cutoff)
        )


class Route(models.Model):
    class Method(models.TextChoices):
        GET = "GET"
        HEAD = "HEAD"
        POST = "POST"
        PUT = "PUT"
        PATCH = "PATCH"
        DELETE = "DELETE"
        OPTIONS = "OPTIONS"

    service = models.ForeignKey(Service, on_delete=models.CASCADE, related_name="routes")
    method = models.CharField(max_length=7, choices=Method.choices, default=Method.GET)
    path = models.CharField(max_length=500, help_text="Path template, e.g. /posts/{slug}")
    owner = models.ForeignKey(Owner, on_delete=models.PROTECT, related_name="routes")
    expected_input = models.TextField(blank=True)
    expected_result = models.TextField(blank=True)
    user_impact = models.TextField(
        blank=True, help_text="Where the user notices a problem with this route."
    )
    notes = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    objects = RouteQuerySet.as_manager()

    class Meta:
        ordering = ["service", "path", "method"]
        constraints = [
            models.UniqueConstraint(
                fields=["service", "method", "path"], name="route_unique_service_method_path"
            ),
        ]

    def __str__(self):
        return f"{self.service.slug} {self.method} {self.path}"

    # A reading names its route by the template the service's router matched (dqclient
    # reports `/posts/{slug}`, the path alone): no reading can name any other path. Checked
    # where a path is set (the API, the admin's form), not by a constraint, so a route
    # registered before the rule stays editable as long as its path is left alone.
    PATH_TEMPLATE = (
        "a path template starting with /, without a query string (?), fragment (#), "
        "whitespace or control characters, e.g. /posts/{slug}"
    )

    @staticmethod
    def path_error(path):
        """Why `path` is not a template a reading can name (PATH_TEMPLATE), or None."""
        if not path.startswith("/"):
            return "must start with /"
        if "?" in path:
            return "has a query string (?): register the path alone"
        if "#" in path:
            return "has a fragment (#): register the path alone"
        if any(char.isspace() or not char.isprintable() for char in path):
            return "has whitespace or a control character"
        return None

    def delete_with_readings(self):
        """Delete the route and what it owns, its readings first, in one transaction.

        Deleting its thresholds takes the evaluation lock (evaluation.wait_for_evaluation),
        and Django's delete sends every pre_delete before it deletes anything, so a plain
        delete() held the lock while the readings, the one large table, went. Deleted
        first, they no longer hold the clock back; a delete that fails (e.g. a pass holding
        the lock past lock_timeout) rolls back whole, readings included."""
        with transaction.atomic():
            Reading.objects.filter(route=self).delete()
            return self.delete()


# The largest magnitude a reading's value may have, whatever its kind. 1e12 ms is 31 years
# and 1e12 database calls in one request is no measurement, so a larger value can only be a
# client's bug; and a bound keeps every sum of a window finite: a billion readings of 1e12
# add up to 1e21, while three of 1.7e308 overflowed (PostgreSQL's avg() raised "value out of
# range", which failed the whole evaluation pass; SQLite stored inf, which JSON cannot carry).
MAX_READING_MAGNITUDE = 1e12


class Signal(models.Model):
    class Kind(models.TextChoices):
        DURATION = "duration"
        RATIO = "ratio"
        COUNT = "count"
        SCORE = "score"

    class Direction(models.TextChoices):
        HIGHER_IS_WORSE = "higher_worse", "higher is worse"
        LOWER_IS_WORSE = "lower_worse", "lower is worse"

    key = models.SlugField(max_length=100, unique=True)
    name = models.CharField(max_length=200, blank=True)
    unit = models.CharField(max_length=20, blank=True)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    direction = models.CharField(
        max_length=12, choices=Direction.choices, default=Direction.HIGHER_IS_WORSE
    )

    # What a reading's value may be, per kind: (lowest, highest, in words). Ingestion
    # refuses any other value, and a threshold's levels must lie within it (Threshold).
    VALUE_RANGES = {
        Kind.DURATION: (0.0, MAX_READING_MAGNITUDE, "a finite number >= 0 and <= 1e12 (duration)"),
        Kind.COUNT: (0.0, MAX_READING_MAGNITUDE, "a finite number >= 0 and <= 1e12 (count)"),
        Kind.RATIO: (0.0, 1.0, "a finite number within [0, 1] (ratio)"),
        Kind.SCORE: (0.0, 100.0, "a finite number within [0, 100] (score)"),
    }

    class Meta:
        ordering = ["key"]

    def __str__(self):
        return self.key


class Statistic(models.TextChoices):
    P50 = "p50"
    P95 = "p95"
    P99 = "p99"
    MEAN = "mean"
    MAX = "max"
    COUNT = "count"
    RATE = "rate", "rate (readings per minute)"


class CacheSegment(models.TextChoices):
    """Which readings a statistic covers. UNKNOWN cache status counts only in ALL."""

    ALL = "all"
    HIT = "hit"
    MISS = "miss"


class CacheStatus(models.TextChoices):
    HIT = "HIT"
    MISS = "MISS"
    STALE = "STALE"
    EXPIRED = "EXPIRED"
    BYPASS = "BYPASS"
    REVALIDATED = "REVALIDATED"
    DYNAMIC = "DYNAMIC"
    UNKNOWN = "UNKNOWN"


HIT_STATUSES = (CacheStatus.HIT, CacheStatus.STALE, CacheStatus.REVALIDATED)
MISS_STATUSES = (CacheStatus.MISS, CacheStatus.EXPIRED, CacheStatus.BYPASS, CacheStatus.DYNAMIC)


def segment_q(segment, prefix=""):
    """A Q selecting readings of a cache segment (`prefix` for related lookups)."""
    if segment == CacheSegment.HIT:
        return Q(**{f"{prefix}cache_status__in": HIT_STATUSES})
    if segment == CacheSegment.MISS:
        return Q(**{f"{prefix}cache_status__in": MISS_STATUSES})
    return Q()


# A threshold's window and sustain: at most a week, as the API has always allowed. A window
# of 2,000,000,000 minutes saved in the admin overflowed `now - window` and stopped the clock.
# Validators, so the admin's forms and model validation share the rule; check constraints
# hold it in the database.
MAX_THRESHOLD_MINUTES = 10080
MAX_MIN_SAMPLES = 1_000_000


class Threshold(models.Model):
    """Warn/critical levels of one statistic of a route's signal; curated by owners.

    `direction` is copied from the signal on save so the database can check that
    critical lies beyond warn in the direction that is worse.
    """

    route = models.ForeignKey(Route, on_delete=models.CASCADE, related_name="thresholds")
    signal = models.ForeignKey(Signal, on_delete=models.PROTECT, related_name="thresholds")
    environment = models.ForeignKey(
        Environment, on_delete=models.PROTECT, related_name="thresholds"
    )
    statistic = models.CharField(max_length=5, choices=Statistic.choices, default=Statistic.P95)
    cache_segment = models.CharField(
        max_length=4, choices=CacheSegment.choices, default=CacheSegment.ALL
    )
    window_minutes = models.PositiveIntegerField(
        default=15, validators=[MinValueValidator(1), MaxValueValidator(MAX_THRESHOLD_MINUTES)]
    )
    warn = models.FloatField()
    critical = models.FloatField()
    min_samples = models.PositiveIntegerField(
        default=20, validators=[MinValueValidator(1), MaxValueValidator(MAX_MIN_SAMPLES)]
    )
    sustain_minutes = models.PositiveIntegerField(
        default=0,
        validators=[MaxValueValidator(MAX_THRESHOLD_MINUTES)],
        help_text="How long a breach must last before it counts.",
    )
    direction = models.CharField(max_length=12, choices=Signal.Direction.choices, editable=False)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ["route", "signal", "environment", "statistic"]
        constraints = [
            models.UniqueConstraint(
                fields=[
                    "route",
                    "signal",
                    "environment",
                    "statistic",
                    "cache_segment",
                    "window_minutes",
                ],
                name="threshold_unique_per_statistic",
            ),
            models.CheckConstraint(
                condition=(
                    Q(direction=Signal.Direction.HIGHER_IS_WORSE, critical__gte=F("warn"))
                    | Q(direction=Signal.Direction.LOWER_IS_WORSE, critical__lte=F("warn"))
                ),
                name="threshold_critical_beyond_warn",
                violation_error_message=(
                    "critical must be at or beyond warn in the signal's worse direction"
                ),
            ),
            models.CheckConstraint(
                condition=Q(window_minutes__gte=1, window_minutes__lte=MAX_THRESHOLD_MINUTES),
                name="threshold_window_within_a_week",
                violation_error_message=(
                    f"window_minutes must be from 1 to {MAX_THRESHOLD_MINUTES} minutes (a week)"
                ),
            ),
            models.CheckConstraint(
                condition=Q(sustain_minutes__lte=MAX_THRESHOLD_MINUTES),
                name="threshold_sustain_within_a_week",
                violation_error_message=(
                    f"sustain_minutes must be from 0 to {MAX_THRESHOLD_MINUTES} minutes (a week)"
                ),
            ),
            models.CheckConstraint(
                condition=Q(min_samples__gte=1),
                name="threshold_min_samples",
                violation_error_message="min_samples must be at least 1",
            ),
        ]

    def __str__(self):
        return (
            f"{self.route} {self.signal.key} {self.statistic}/{self.cache_segment} "
            f"{self.window_minutes}m ({self.environment.slug})"
        )

    def save(self, *args, **kwargs):
        self.direction = self.signal.direction
        if kwargs.get("update_fields") is not None:
            kwargs["update_fields"] = {*kwargs["update_fields"], "direction"}
        super().save(*args, **kwargs)

    @staticmethod
    def ordering_error(signal, warn, critical):
        """Why warn/critical are out of order for the signal's direction, or None.

        The check constraint threshold_critical_beyond_warn enforces the same rule; this
        says it in words for forms and the API before a save is tried."""
        if signal.direction == Signal.Direction.LOWER_IS_WORSE and critical > warn:
            side = "lower is worse, so critical must be at or below warn"
        elif signal.direction != Signal.Direction.LOWER_IS_WORSE and critical < warn:
            side = "higher is worse, so critical must be at or above warn"
        else:
            return None
        return f"For {signal.key} {side} (warn {warn}, critical {critical})."

    @staticmethod
    def level_range(signal, statistic):
        """(lowest, highest, in words) a warn or critical level may be: the range of the
        signal's readings, except for count and rate, which count readings whatever the
        signal measures."""
        if statistic == Statistic.COUNT:
            return 0.0, math.inf, "a finite number >= 0 (readings in the window)"
        if statistic == Statistic.RATE:
            return 0.0, math.inf, "a finite number >= 0 (readings per minute)"
        return Signal.VALUE_RANGES.get(signal.kind, (-math.inf, math.inf, "a finite number"))

    @staticmethod
    def range_errors(signal, statistic, levels):
        """{level name: (why, expected)} for each of `levels` ({"warn": 5, ...}) outside
        `level_range`: a level no reading can reach never fires, and one every reading
        passes always does. Forms and the API both ask this before a save."""
        low, high, expected = Threshold.level_range(signal, statistic)
        return {
            name: (f"out of range for the {statistic} of {signal.key}", expected)
            for name, value in levels.items()
            if value is not None and not low <= value <= high
        }

    def level_for(self, value):
        """ok / warn / critical for a value, respecting the signal's direction."""
        sign = -1 if self.direction == Signal.Direction.LOWER_IS_WORSE else 1
        if sign * value >= sign * self.critical:
            return Status.CRITICAL
        if sign * value >= sign * self.warn:
            return Status.WARN
        return Status.OK


class Status(models.TextChoices):
    OK = "ok"
    PENDING = "pending"
    WARN = "warn"
    CRITICAL = "critical"
    NO_DATA = "no_data", "no data"


class ThresholdState(models.Model):
    """One threshold's status, value and breach as of the last evaluation pass; every worker
    and /metrics read it. A pass writes only the states that changed (`changed_at`); the
    time of the pass itself is its EvaluationRun's `started_at`."""

    threshold = models.OneToOneField(Threshold, on_delete=models.CASCADE, related_name="state")
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.NO_DATA)
    value = models.FloatField(null=True, blank=True)
    samples = models.PositiveIntegerField(default=0)
    breach_level = models.CharField(max_length=8, choices=Status.choices, blank=True)
    breach_started_at = models.DateTimeField(null=True, blank=True)
    # A breach at warn may turn critical later: critical must last sustain_minutes on its own.
    critical_started_at = models.DateTimeField(null=True, blank=True)
    # The column keeps its earlier name (migration 0008), so the previous release's processes
    # kept working while the migration ran.
    changed_at = models.DateTimeField(null=True, blank=True, db_column="evaluated_at")

    def __str__(self):
        return f"{self.threshold_id}: {self.status}"


class IncidentQuerySet(models.QuerySet):
    def open(self):
        return self.filter(resolved_at__isnull=True)

    def paging(self, now=None):
        """Open incidents someone should look at: not silenced, and not acknowledged
        unless they escalated after the acknowledgement."""
        now = now or timezone.now()
        return (
            self.open()
            .filter(Q(silenced_until__isnull=True) | Q(silenced_until__lte=now))
            .filter(
                Q(acknowledged_at__isnull=True)
                | Q(escalated_at__isnull=False, escalated_at__gt=F("acknowledged_at"))
            )
        )


class Incident(models.Model):
    """A counted breach of a threshold, from when it opened to when it recovered."""

    threshold = models.ForeignKey(Threshold, on_delete=models.CASCADE, related_name="incidents")
    route = models.ForeignKey(Route, on_delete=models.CASCADE, related_name="incidents")
    level = models.CharField(
        max_length=8, choices=[(Status.WARN, "warn"), (Status.CRITICAL, "critical")]
    )
    peak_value = models.FloatField()
    opened_at = models.DateTimeField(default=timezone.now)
    escalated_at = models.DateTimeField(
        null=True, blank=True, help_text="When warn became critical."
    )
    resolved_at = models.DateTimeField(null=True, blank=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    acknowledgement_note = models.TextField(blank=True)
    silenced_until = models.DateTimeField(null=True, blank=True)
    silenced_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    silence_reason = models.TextField(blank=True)

    objects = IncidentQuerySet.as_manager()

    class Meta:
        ordering = ["-opened_at"]
        constraints = [
            # Two evaluations at once never open two incidents for one breach.
            models.UniqueConstraint(
                fields=["threshold"],
                condition=Q(resolved_at__isnull=True),
                name="incident_one_open_per_threshold",
            ),
        ]
        indexes = [
            # route page and board: open incidents of a route
            models.Index(fields=["route", "resolved_at"], name="incident_route_open_idx"),
        ]

    def __str__(self):
        state = "open" if self.resolved_at is None else "resolved"
        return f"{self.level} on {self.threshold} ({state})"

    @property
    def is_silenced(self):
        return self.silenced_until is not None and self.silenced_until > timezone.now()

    def acknowledge(self, user, note="", *, now=None):
        """Record who looked at the incident; it stays open until the signal recovers."""
        self.acknowledged_at = now or timezone.now()
        self.acknowledged_by = user
        self.acknowledgement_note = note
        self.save(update_fields=["acknowledged_at", "acknowledged_by", "acknowledgement_note"])

    def silence(self, user, until, reason=""):
        """Silence until `until`; the silence expires by itself (see `is_silenced`)."""
        self.silenced_until = until
        self.silenced_by = user
        self.silence_reason = reason
        self.save(update_fields=["silenced_until", "silenced_by", "silence_reason"])

    def unsilence(self):
        self.silenced_until = None
        self.save(update_fields=["silenced_until"])


class NotificationQuerySet(models.QuerySet):
    def due(self, now):
        """Pending notifications whose next attempt is due (the delivery query), each only
        once its incident's earlier events are sent or given up: a receiver gets opened,
        escalated and resolved in that order, even when an earlier one had to be retried."""
        earlier = Notification.objects.filter(
            incident=OuterRef("incident"),
            status=Notification.Status.PENDING,
            pk__lt=OuterRef("pk"),
        )
        return self.filter(status=Notification.Status.PENDING, next_attempt_at__lte=now).exclude(
            Exists(earlier)
        )

    def deliver_again(self, now=None):
        """Put failed and skipped notifications back in the queue, as if new; returns how many.
        Pending and delivered ones are left alone."""
        return self.filter(
            status__in=[Notification.Status.FAILED, Notification.Status.SKIPPED]
        ).update(
            status=Notification.Status.PENDING,
            attempts=0,
            next_attempt_at=now or timezone.now(),
            delivered_at=None,
            last_error="",
        )


class Notification(models.Model):
    """An incident event for the webhook of its route's owner: an outbox row, written in the
    transaction that opens, escalates or resolves the incident, and sent (at least once) by
    `deliver_notifications` (signals_app.notifications)."""

    class Event(models.TextChoices):
        OPENED = "opened"
        ESCALATED = "escalated"
        RESOLVED = "resolved"

    class Status(models.TextChoices):
        PENDING = "pending"
        DELIVERED = "delivered"
        FAILED = "failed", "failed (gave up)"
        SKIPPED = "skipped", "skipped (no webhook URL)"

    # No foreign key in the database: a notification outlives its incident (deleted with its
    # threshold), so the `resolved` of a deleted threshold and what was not sent yet still
    # go. Null only for the admin's outer join; always set.
    incident = models.ForeignKey(
        Incident,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        null=True,
        related_name="notifications",
    )
    owner = models.ForeignKey(Owner, on_delete=models.CASCADE, related_name="notifications")
    event = models.CharField(max_length=9, choices=Event.choices)
    # The event's facts as they were when it happened (incident, route, threshold, owner,
    # value); delivery adds "event" and "delivery" around them.
    payload = models.JSONField()
    created_at = models.DateTimeField(default=timezone.now)
    status = models.CharField(max_length=9, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    # While a delivery process holds it (claimed), the end of its lease.
    next_attempt_at = models.DateTimeField(default=timezone.now)
    delivered_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)

    objects = NotificationQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            # A pass run again never notifies the same event twice.
            models.UniqueConstraint(
                fields=["incident", "event"], name="notification_once_per_event"
            ),
        ]
        indexes = [
            # delivery: pending notifications due, oldest due first
            models.Index(fields=["status", "next_attempt_at"], name="notification_due_idx"),
            # prune by age, and the admin's newest-first list
            models.Index(fields=["created_at"], name="notification_created_idx"),
        ]

    def __str__(self):
        return f"incident.{self.event} #{self.pk} to {self.owner_id}"


class EvaluationRunQuerySet(models.QuerySet):
    def finished(self):
        """Finished passes, latest start first: the first is "the last pass" wherever one is
        read (breach continuity, /metrics, and the run `prune` always keeps)."""
        return self.filter(finished_at__isnull=False).order_by("-started_at", "-pk")


class EvaluationRun(models.Model):
    """One pass of `evaluate`: what it saw and how long it took."""

    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.FloatField(null=True, blank=True)
    thresholds = models.PositiveIntegerField(default=0)
    states_changed = models.PositiveIntegerField(default=0, db_default=0)
    statuses = models.JSONField(default=dict, blank=True)
    incidents_opened = models.PositiveIntegerField(default=0)
    incidents_escalated = models.PositiveIntegerField(default=0)
    incidents_resolved = models.PositiveIntegerField(default=0)

    objects = EvaluationRunQuerySet.as_manager()

    class Meta:
        ordering = ["-started_at"]
        indexes = [
            # the latest finished run (ORDER BY started_at DESC LIMIT 1), and pruning by age
            models.Index(fields=["started_at"], name="evaluation_run_started_at"),
        ]

    def __str__(self):
        return f"evaluation at {self.started_at:%Y-%m-%d %H:%M:%S}"


class Baseline(models.Model):
    """The measured before state of a route's signal in one environment and cache segment."""

    route = models.ForeignKey(Route, on_delete=models.CASCADE, related_name="baselines")
    signal = models.ForeignKey(Signal, on_delete=models.PROTECT, related_name="baselines")
    environment = models.ForeignKey(Environment, on_delete=models.PROTECT, related_name="baselines")
    cache_segment = models.CharField(
        max_length=4, choices=CacheSegment.choices, default=CacheSegment.ALL
    )
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    count = models.PositiveIntegerField(default=0)
    p50 = models.FloatField(null=True, blank=True)
    p95 = models.FloatField(null=True, blank=True)
    p99 = models.FloatField(null=True, blank=True)
    mean = models.FloatField(null=True, blank=True)
    excludes_incidents = models.BooleanField(default=False)
    captured_at = models.DateTimeField(default=timezone.now)
    captured_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    note = models.TextField(blank=True, help_text="Why this baseline was captured.")
    active = models.BooleanField(default=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ["-captured_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["route", "signal", "environment", "cache_segment"],
                condition=Q(active=True),
                name="baseline_one_active_per_key",
            ),
            models.CheckConstraint(
                condition=Q(window_end__gt=F("window_start")), name="baseline_window_ordered"
            ),
        ]

    def __str__(self):
        return (
            f"{self.route} {self.signal.key} {self.cache_segment} ({self.environment.slug}) "
            f"{self.window_start:%Y-%m-%d %H:%M}–{self.window_end:%H:%M}"
        )

    @classmethod
    def capture(
        cls,
        route,
        signal,
        environment,
        cache_segment=CacheSegment.ALL,
        *,
        start=None,
        end=None,
        minutes=None,
        user=None,
        note="",
        exclude_incidents=False,
    ):
        """Measure the window (start, end] (or the `minutes` before `end`/now, default 60)
        and make it the active baseline of its key; the previous one is kept, inactive.
        Returns the new baseline, or None when the window has no readings.
        See `signals_app.evaluation.capture_baselines` for many keys in one query."""
        from .evaluation import BaselineKey, capture_baselines, capture_window

        start, end = capture_window(start=start, end=end, minutes=minutes)
        result = capture_baselines(
            [BaselineKey(route.pk, signal.pk, environment.pk, cache_segment)],
            start=start,
            end=end,
            user=user,
            note=note,
            exclude_incidents=exclude_incidents,
        )
        return result.baselines[0] if result.baselines else None


class Reading(models.Model):
    """One measurement. `service` is stored so idempotency keys are unique per service."""

    id = models.BigAutoField(primary_key=True)
    service = models.ForeignKey(Service, on_delete=models.CASCADE, related_name="+")
    # No index of its own (each index is paid on every insert): route is the first column of
    # reading_route_signal_env_time. Signal and environment keep theirs: a rare custom signal
    # or environment is filtered on, and deleting one checks the readings for it.
    route = models.ForeignKey(Route, on_delete=models.CASCADE, related_name="+", db_index=False)
    signal = models.ForeignKey(Signal, on_delete=models.CASCADE, related_name="+")
    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="+")
    value = models.FloatField()
    observed_at = models.DateTimeField()
    received_at = models.DateTimeField(default=timezone.now)
    cache_status = models.CharField(
        max_length=11, choices=CacheStatus.choices, default=CacheStatus.UNKNOWN
    )
    release = models.CharField(max_length=100, blank=True)
    # NULL, not "", for "no key": the partial unique index skips NULLs.
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001

    class Meta:
        ordering = ["-observed_at"]
        constraints = [
            # A retried reading is stored once, whichever batch it arrives in.
            models.UniqueConstraint(
                fields=["service", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="reading_unique_idempotency_key",
            ),
        ]
        indexes = [
            # route status, baselines, comparisons: readings of one route+signal+env in a window
            models.Index(
                fields=["route", "signal", "environment", "observed_at"],
                name="reading_route_signal_env_time",
            ),
            # reading changelist and pruning: newest readings first
            models.Index(fields=["observed_at"], name="reading_observed_at_idx"),
        ]

    def __str__(self):
        return f"{self.value} at {self.observed_at:%Y-%m-%d %H:%M:%S}"


class IdempotentRequest(models.Model):
    """An `Idempotency-Key` request header seen for a service (IETF httpapi draft)."""

    class State(models.TextChoices):
        RUNNING = "running"
        DONE = "done"

    service = models.ForeignKey(Service, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64, help_text="SHA-256 of the request body.")
    state = models.CharField(max_length=7, choices=State.choices, default=State.RUNNING)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["service", "key"], name="idempotent_request_unique_key"
            ),
        ]
        indexes = [
            # pruning of keys older than 24 hours
            models.Index(fields=["created_at"], name="idempotent_request_created"),
        ]

    def __str__(self):
        return f"{self.service_id}:{self.key} ({self.state})"


class Change(models.Model):
    """One variable changed on a route, compared before/after."""

    route = models.ForeignKey(Route, on_delete=models.CASCADE, related_name="changes")
    environment = models.ForeignKey(Environment, on_delete=models.PROTECT, related_name="changes")
    variable = models.CharField(max_length=200, help_text="The one thing that changed.")
    summary = models.TextField(blank=True)
    applied_at = models.DateTimeField(validators=[validate_plausible_time])
    release = models.CharField(max_length=100, blank=True)
    cache_cleared = models.CharField(
        max_length=200, blank=True, help_text="Which cache was cleared, if any."
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    history = HistoricalRecords()

    class Meta:
        ordering = ["-applied_at"]
        indexes = [
            # confounding check: other changes on the same route+environment near a window
            models.Index(
                fields=["route", "environment", "applied_at"], name="change_route_env_time"
            ),
        ]

    def __str__(self):
        return f"{self.variable} on {self.route} at {self.applied_at:%Y-%m-%d %H:%M}"

    def clean(self):
        super().clean()
        error = self.route_move_error(self.route_id)
        if error:
            raise ValidationError({"route": error})

    def route_move_error(self, route_id):
        """Why this change may not move to route `route_id`, or None: a rollback note of
        the change is on its route, and would stay there while its change moved (a note
        and its change are on one route; creating or editing a note checks the same). One
        query; none for a change not saved yet."""
        if self.pk is None:
            return None
        left = list(
            RollbackNote.objects.filter(change_id=self.pk)
            .exclude(route_id=route_id)
            .order_by("pk")
            .values_list("pk", "route_id")[:20]
        )
        if not left:
            return None
        notes = ", ".join(f"{pk} (route {note_route})" for pk, note_route in left)
        return (
            f"this change's rollback notes {notes} would be left on another route: move them "
            f"to route {route_id} first, or clear their change"
        )


class RollbackNote(models.Model):
    class Outcome(models.TextChoices):
        PASSED = "passed"
        FAILED = "failed"

    route = models.ForeignKey(Route, on_delete=models.CASCADE, related_name="rollback_notes")
    change = models.ForeignKey(
        Change, null=True, blank=True, on_delete=models.SET_NULL, related_name="rollback_notes"
    )
    steps = models.TextField()
    command = models.TextField(blank=True)
    owner = models.ForeignKey(
        Owner, null=True, blank=True, on_delete=models.SET_NULL, related_name="rollback_notes"
    )
    # In the future, a route stopped counting as due for a rehearsal for years.
    rehearsed_at = models.DateTimeField(null=True, blank=True, validators=[validate_past_time])
    rehearsed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    rehearsal_outcome = models.CharField(max_length=6, choices=Outcome.choices, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ["route", "-created_at"]

    def __str__(self):
        return f"rollback for {self.route}"

    def record_rehearsal(self, user, outcome, *, when=None):
        """Record a rehearsal in staging (who, when, outcome); history keeps the old one."""
        self.rehearsed_at = when or timezone.now()
        self.rehearsed_by = user
        self.rehearsal_outcome = outcome
        self.save(update_fields=["rehearsed_at", "rehearsed_by", "rehearsal_outcome", "updated_at"])


REVIEWERS_GROUP = "Reviewers"


class ContentItemQuerySet(models.QuerySet):
    def review_queue(self):
        """needs_review first, then the longest waiting (oldest import of its current version)."""
        return self.order_by(*review_queue_order())

    def score_band(self, band, minimum=None):
        """Items whose lowest score is in a band: `low` (any score below the minimum,
        settings.DQ_CONTENT_MIN_SCORE), `medium` (all at or above it, one below
        HIGH_SCORE), `high` (all at or above HIGH_SCORE) or `unscored` (a score missing).
        """
        minimum = settings.DQ_CONTENT_MIN_SCORE if minimum is None else minimum
        scores = ContentItem.SCORE_FIELDS
        all_at_least = [Q(**{f"{name}__gte": minimum}) for name in scores]
        if band == "low":
            return self.filter(_any(Q(**{f"{name}__lt": minimum}) for name in scores))
        if band == "unscored":
            return self.filter(_any(Q(**{f"{name}__isnull": True}) for name in scores))
        high = ContentItem.HIGH_SCORE
        all_high = [Q(**{f"{name}__gte": high}) for name in scores]
        if band == "medium":
            return self.filter(*all_at_least).exclude(_all(all_high))
        if band == "high":
            return self.filter(*all_high)
        raise ValueError(f"unknown score band {band!r}; expected low, medium, high or unscored")

    def review(self, reviewer, decision, note=""):
        """Record one reviewer decision on every item here: a Review row each, and the
        item's review_status set to the decision. Raises PermissionDenied for non-reviewers.
        """
        if not ContentItem.can_be_reviewed_by(reviewer):
            raise PermissionDenied("only reviewers may review content")
        decision = Review.Decision(decision)
        now = timezone.now()
        with transaction.atomic():
            # Lock the rows so that the versions recorded are the versions decided on,
            # even when an import updates the same items at the same time.
            items = list(self.order_by("pk").select_for_update().only("pk", "version"))
            reviews = Review.objects.bulk_create(
                Review(
                    item=item,
                    reviewer=reviewer,
                    decision=decision,
                    note=note,
                    version=item.version,
                    created_at=now,
                )
                for item in items
            )
            changes = {"review_status": decision.value, "updated_at": now}
            if decision == Review.Decision.REVIEWED:
                changes["last_reviewed_at"] = timezone.localdate(now)
            ContentItem.objects.filter(pk__in=[item.pk for item in items]).update(**changes)
        return reviews


def review_queue_order():
    # The content_review_queue index (review_status, imported_at) serves this order.
    waiting = models.Case(
        models.When(review_status=ContentItem.ReviewStatus.NEEDS_REVIEW, then=0),
        default=1,
    )
    return [waiting.asc(), "imported_at", "pk"]


def _any(conditions):
    return functools.reduce(operator.or_, conditions)


def _all(conditions):
    return functools.reduce(operator.and_, conditions)


class ContentItem(models.Model):
    """A content document with its quality scores, flags and review status."""

    SCORE_FIELDS = ("quality", "freshness", "depth", "clarity")
    HIGH_SCORE = 90

    class ReviewStatus(models.TextChoices):
        DRAFT = "draft"
        NEEDS_REVIEW = "needs_review", "needs review"
        REVIEWED = "reviewed"
        CHANGES_REQUESTED = "changes_requested", "changes requested"

    reference = models.CharField(max_length=100, unique=True)
    source_id = models.CharField(max_length=100, blank=True)
    title = models.CharField(max_length=500)
    body = models.TextField(blank=True)
    topic = models.CharField(max_length=500, blank=True)
    summary = models.TextField(blank=True)
    ai_outline = models.JSONField(default=list, blank=True)
    ai_brief = models.TextField(blank=True)
    stack = models.JSONField(default=list, blank=True)
    tools = models.JSONField(default=list, blank=True)
    code_language = models.CharField(max_length=50, blank=True)
    difficulty = models.CharField(max_length=50, blank=True)
    reading_time = models.PositiveIntegerField(null=True, blank=True)
    view_count = models.PositiveBigIntegerField(null=True, blank=True)
    quality = models.PositiveSmallIntegerField(null=True, blank=True)
    freshness = models.PositiveSmallIntegerField(null=True, blank=True)
    depth = models.PositiveSmallIntegerField(null=True, blank=True)
    clarity = models.PositiveSmallIntegerField(null=True, blank=True)
    ai_generated_style = models.BooleanField(default=False)
    has_images = models.BooleanField(default=False)
    image_heavy = models.BooleanField(default=False)
    needs_human_review = models.BooleanField(default=False)
    revision_status = models.CharField(max_length=50, blank=True)
    version = models.CharField(max_length=50, blank=True)
    last_reviewed_at = models.DateField(null=True, blank=True)
    content_hash = models.CharField(max_length=128, blank=True)
    checklist = models.JSONField(default=list, blank=True)
    entities = models.JSONField(default=list, blank=True)
    image_sources = models.JSONField(default=list, blank=True)
    payload = models.JSONField(default=dict, blank=True)
    notes = models.JSONField(default=list, blank=True)
    missing_fields = models.JSONField(
        default=list, blank=True, help_text="Meta fields the document did not give."
    )
    review_status = models.CharField(
        max_length=17, choices=ReviewStatus.choices, default=ReviewStatus.NEEDS_REVIEW
    )
    imported_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    history = HistoricalRecords(excluded_fields=["body"])

    objects = ContentItemQuerySet.as_manager()

    class Meta:
        ordering = ["reference"]
        permissions = [("review_contentitem", "Can mark content as reviewed")]
        constraints = [
            models.CheckConstraint(
                condition=(Q(quality__isnull=True) | Q(quality__lte=100))
                & (Q(freshness__isnull=True) | Q(freshness__lte=100))
                & (Q(depth__isnull=True) | Q(depth__lte=100))
                & (Q(clarity__isnull=True) | Q(clarity__lte=100)),
                name="content_scores_within_0_100",
            ),
        ]
        indexes = [
            # review queue: needs_review first, oldest first
            models.Index(fields=["review_status", "imported_at"], name="content_review_queue"),
        ]

    def __str__(self):
        return f"{self.reference}: {self.title}"

    # A document's revision status, as the review status it keeps on import.
    REVISION_STATUSES = {
        "draft": ReviewStatus.DRAFT,
        "reviewed": ReviewStatus.REVIEWED,
        "approved": ReviewStatus.REVIEWED,
        "published": ReviewStatus.REVIEWED,
        "changes requested": ReviewStatus.CHANGES_REQUESTED,
        "changes_requested": ReviewStatus.CHANGES_REQUESTED,
        "rejected": ReviewStatus.CHANGES_REQUESTED,
    }

    @staticmethod
    def can_be_reviewed_by(user):
        """Reviewers: members of the Reviewers group or holders of review_contentitem."""
        if user is None or not user.is_active:
            return False
        return (
            user.has_perm("signals_app.review_contentitem")
            or user.groups.filter(name=REVIEWERS_GROUP).exists()
        )

    @classmethod
    def review_status_on_import(cls, document, *, changed, min_score=None):
        """The review status an imported version of `document` (an item or a parsed
        document: anything with the item's fields) starts in.

        needs_review when the document asks for a human review, any score is below
        the minimum (a missing score counts as below: nobody measured it), or the item
        changed since it was last imported (and so since its last review); otherwise
        what its revision status says (an unknown revision status needs review too).
        """
        minimum = settings.DQ_CONTENT_MIN_SCORE if min_score is None else min_score
        if document.needs_human_review or changed:
            return cls.ReviewStatus.NEEDS_REVIEW
        scores = [getattr(document, name) for name in cls.SCORE_FIELDS]
        if any(score is None or score < minimum for score in scores):
            return cls.ReviewStatus.NEEDS_REVIEW
        status = document.revision_status.strip().lower()
        return cls.REVISION_STATUSES.get(status, cls.ReviewStatus.NEEDS_REVIEW)


class Review(models.Model):
    class Decision(models.TextChoices):
        REVIEWED = "reviewed"
        CHANGES_REQUESTED = "changes_requested", "changes requested"

    item = models.ForeignKey(ContentItem, on_delete=models.CASCADE, related_name="reviews")
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="content_reviews"
    )
    decision = models.CharField(max_length=17, choices=Decision.choices)
    note = models.TextField(blank=True)
    version = models.CharField(max_length=50, blank=True, help_text="The version reviewed.")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.decision} of {self.item.reference} by {self.reviewer}"
