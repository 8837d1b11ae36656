"""Realistic demo data: two teams, two services, six routes and two days of readings,
and the people who use them: alice, bob (Blog team), dana, erik (Search team) in the
group Owners, carol in Reviewers.

Idempotent: every object is looked up by its natural key and every reading carries
an idempotency key, so a second run changes nothing.
"""

import random
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from signals_app.content_import import content_signal_target, import_paths
from signals_app.models import (
    REVIEWERS_GROUP,
    Baseline,
    Change,
    Environment,
    Owner,
    Reading,
    RollbackNote,
    Route,
    Service,
    Signal,
    Threshold,
)
from signals_app.roles import OWNERS_GROUP, setup_roles

DAYS = 2
REQUEST_EVERY = timedelta(minutes=1)
# The regression: 6 hours before the data ends, a release makes /posts/{slug} slower on MISS.
REGRESSION_AGO = timedelta(hours=6)
# The lucky cache hit: a longer CDN TTL on /tags/{tag} raises the hit ratio, not the speed.
TTL_CHANGE_AGO = timedelta(hours=20)
# The content samples, copied into the repository so a fresh clone has them.
DEMO_CONTENT = Path(__file__).resolve().parents[2] / "demo" / "content"


@dataclass(frozen=True)
class DemoRoute:
    service: str
    method: str
    path: str
    expected_input: str
    expected_result: str
    user_impact: str
    rollback_steps: str
    rollback_command: str
    hit_ratio: float  # share of requests served by the CDN
    miss_ms: float  # typical origin latency
    db_calls: int
    error_rate: float


ROUTES = [
    DemoRoute(
        "blog", "GET", "/posts/{slug}",
        "a published post's slug, e.g. /posts/measure-before-you-change",
        "200 with the rendered post; under 300 ms at p95 from the origin",
        "readers see a blank article or a spinner on the post page",
        "Revert the release in the deploy tool, then purge /posts/* on the CDN.",
        "deploy rollback blog --to previous && cdn purge '/posts/*'",
        0.72, 180.0, 6, 0.002,
    ),
    DemoRoute(
        "blog", "GET", "/feed.xml",
        "no input; feed readers poll every 15 minutes",
        "200 application/rss+xml with the 20 newest posts",
        "feed readers show stale posts or an error badge",
        "Restore the previous feed template from the release tag.",
        "deploy rollback blog --component feed",
        0.9, 120.0, 3, 0.001,
    ),
    DemoRoute(
        "blog", "POST", "/comments",
        "JSON {post, author, text}; text at most 5,000 characters",
        "201 with the comment id; the comment appears after moderation",
        "the comment form spins and the comment is lost",
        "Disable the comment form with the feature flag, then roll back.",
        "flags set blog.comments off && deploy rollback blog",
        0.0, 240.0, 9, 0.01,
    ),
    DemoRoute(
        "blog", "GET", "/tags/{tag}",
        "a tag slug, e.g. /tags/python",
        "200 with the posts of the tag, newest first",
        "tag pages load slowly from search engine results",
        "Set the CDN TTL for /tags/* back to 60 s.",
        "cdn ttl set '/tags/*' 60",
        0.55, 210.0, 5, 0.002,
    ),
    DemoRoute(
        "search", "GET", "/search",
        "query string q (1 to 200 characters), optional page",
        "200 with at most 20 ranked results in under 400 ms at p95",
        "the results page hangs after pressing enter",
        "Switch the index alias back to the previous index.",
        "search-admin alias swap posts previous",
        0.15, 260.0, 2, 0.004,
    ),
    DemoRoute(
        "search", "GET", "/suggest",
        "query string q (at least 2 characters)",
        "200 with up to 8 suggestions in under 100 ms",
        "no suggestions appear under the search box while typing",
        "Turn off suggestions with the feature flag.",
        "flags set search.suggest off",
        0.35, 45.0, 1, 0.001,
    ),
]  # fmt: skip

TEAMS = {
    "Blog team": {
        "contact_email": "blog-team@example.com",
        "members": ["alice", "bob"],
        "services": ["blog"],
    },
    "Search team": {
        "contact_email": "search-team@example.com",
        "members": ["dana", "erik"],
        "services": ["search"],
    },
}


class Command(BaseCommand):
    help = "Load realistic demo data (idempotent: a second run changes nothing)."

    def handle(self, *args, **options):
        # To the minute, so the last hour has data and the first evaluation has statuses.
        self.now = timezone.now().replace(second=0, microsecond=0)
        # The role groups first: the demo owners and carol go into them, so each can log
        # in to the admin once given a password.
        for line in setup_roles():
            self.stdout.write(f"roles: {line}")
        with transaction.atomic():
            routes = self.load_routes()
            self.load_thresholds(routes)
            changes = self.load_changes(routes)
            self.load_rollback_notes(routes, changes)
        created = self.load_readings(routes)
        self.load_baseline(routes)
        self.stdout.write(
            f"demo data: {len(routes)} routes, {Reading.objects.count()} readings "
            f"({created} new), {Change.objects.count()} changes"
        )
        self.stdout.write(f"demo content: {self.load_content().summary}")

    def load_content(self):
        """The sample content documents, and carol, a reviewer, so the review queue can be
        tried at once."""
        User = get_user_model()
        carol, created = User.objects.get_or_create(
            username="carol", defaults={"is_staff": True, "email": "carol@example.com"}
        )
        if created:
            carol.set_unusable_password()
            carol.save(update_fields=["password"])
        carol.groups.add(Group.objects.get(name=REVIEWERS_GROUP))
        result = import_paths([DEMO_CONTENT])
        route = content_signal_target()[0]
        RollbackNote.objects.get_or_create(
            route=route,
            change=None,
            defaults={
                "steps": "Re-import the previous export: changed items are updated and go "
                "back to needs_review; unchanged ones are left alone.",
                "command": "python manage.py import_content exports/previous/",
                "owner": route.owner,
            },
        )
        return result

    def load_routes(self):
        User = get_user_model()
        owners_group = Group.objects.get(name=OWNERS_GROUP)
        services = {}
        for team_name, team in TEAMS.items():
            owner, _ = Owner.objects.get_or_create(
                name=team_name, defaults={"contact_email": team["contact_email"]}
            )
            for username in team["members"]:
                user, created = User.objects.get_or_create(
                    username=username,
                    defaults={"is_staff": True, "email": f"{username}@example.com"},
                )
                if created:
                    user.set_unusable_password()
                    user.save(update_fields=["password"])
                owner.members.add(user)
                user.groups.add(owners_group)
            for slug in team["services"]:
                services[slug], _ = Service.objects.get_or_create(
                    slug=slug,
                    defaults={
                        "owner": owner,
                        "name": slug.title(),
                        "base_url": f"https://{slug}.example.com",
                    },
                )
        routes = {}
        for spec in ROUTES:
            service = services[spec.service]
            routes[spec], _ = Route.objects.get_or_create(
                service=service,
                method=spec.method,
                path=spec.path,
                defaults={
                    "owner": service.owner,
                    "expected_input": spec.expected_input,
                    "expected_result": spec.expected_result,
                    "user_impact": spec.user_impact,
                },
            )
        return routes

    def load_thresholds(self, routes):
        production = Environment.objects.get(slug="production")
        response_time = Signal.objects.get(key="response_time_ms")
        error_rate = Signal.objects.get(key="error_rate")
        for spec, route in routes.items():
            levels = [
                (response_time, "p95", "miss", spec.miss_ms * 1.6, spec.miss_ms * 2.5),
                (error_rate, "mean", "all", 0.02, 0.05),
            ]
            for signal, statistic, segment, warn, critical in levels:
                Threshold.objects.get_or_create(
                    route=route,
                    signal=signal,
                    environment=production,
                    statistic=statistic,
                    cache_segment=segment,
                    window_minutes=60,
                    defaults={
                        "warn": round(warn, 3),
                        "critical": round(critical, 3),
                        "min_samples": 10,
                        "sustain_minutes": 10,
                    },
                )

    def load_changes(self, routes):
        production = Environment.objects.get(slug="production")
        by_path = {spec.path: route for spec, route in routes.items()}
        regression, _ = Change.objects.get_or_create(
            route=by_path["/posts/{slug}"],
            environment=production,
            variable="related-posts widget on the post page",
            defaults={
                "summary": "Release 1.8.0 renders five related posts under each article.",
                "applied_at": self.now - REGRESSION_AGO,
                "release": "1.8.0",
                "cache_cleared": "CDN: /posts/*",
            },
        )
        ttl, _ = Change.objects.get_or_create(
            route=by_path["/tags/{tag}"],
            environment=production,
            variable="CDN TTL for /tags/* from 60 s to 300 s",
            defaults={
                "summary": "Longer TTL; the origin code is unchanged.",
                "applied_at": self.now - TTL_CHANGE_AGO,
                "release": "",
                "cache_cleared": "",
            },
        )
        return {"/posts/{slug}": regression, "/tags/{tag}": ttl}

    def load_rollback_notes(self, routes, changes):
        for spec, route in routes.items():
            RollbackNote.objects.get_or_create(
                route=route,
                change=changes.get(spec.path),
                defaults={
                    "steps": spec.rollback_steps,
                    "command": spec.rollback_command,
                    "owner": route.owner,
                },
            )

    def load_readings(self, routes):
        """Two days of requests, one a minute per route, three signals each."""
        rng = random.Random(20261126)
        production = Environment.objects.get(slug="production")
        signals = {
            s.key: s
            for s in Signal.objects.filter(key__in=["response_time_ms", "error_rate", "db_calls"])
        }
        start = self.now - timedelta(days=DAYS)
        steps = int(timedelta(days=DAYS) / REQUEST_EVERY)
        readings = []
        for spec, route in routes.items():
            for step in range(steps):
                observed_at = start + step * REQUEST_EVERY + timedelta(seconds=rng.randint(0, 59))
                hit_ratio = spec.hit_ratio
                if spec.path == "/tags/{tag}" and observed_at >= self.now - TTL_CHANGE_AGO:
                    hit_ratio = 0.9
                is_hit = rng.random() < hit_ratio
                if spec.method != "GET":
                    cache_status = "DYNAMIC"
                else:
                    cache_status = "HIT" if is_hit else rng.choice(["MISS", "MISS", "EXPIRED"])
                miss_ms = spec.miss_ms
                if spec.path == "/posts/{slug}" and observed_at >= self.now - REGRESSION_AGO:
                    miss_ms *= 1.8  # the regression
                if cache_status == "HIT":
                    response_ms = rng.lognormvariate(0, 0.3) * 18
                    db_calls = 0
                else:
                    response_ms = rng.lognormvariate(0, 0.35) * miss_ms
                    db_calls = spec.db_calls + rng.randint(0, 2)
                error = 1.0 if rng.random() < spec.error_rate else 0.0
                values = {
                    "response_time_ms": round(response_ms, 1),
                    "error_rate": error,
                    "db_calls": db_calls,
                }
                for key, value in values.items():
                    readings.append(
                        Reading(
                            service=route.service,
                            route=route,
                            signal=signals[key],
                            environment=production,
                            value=value,
                            observed_at=observed_at,
                            received_at=observed_at + timedelta(seconds=1),
                            cache_status=cache_status,
                            release="1.8.0"
                            if observed_at >= self.now - REGRESSION_AGO
                            else "1.7.9",
                            idempotency_key=f"demo:{route.pk}:{step}:{key}",
                        )
                    )
        before = Reading.objects.count()
        # The unique (service, idempotency_key) constraint makes a second run a no-op.
        Reading.objects.bulk_create(readings, batch_size=2000, ignore_conflicts=True)
        return Reading.objects.count() - before

    def load_baseline(self, routes):
        """The before state of /posts/{slug}: origin (MISS) response time over the day
        before the regression."""
        route = next(r for spec, r in routes.items() if spec.path == "/posts/{slug}")
        window_end = self.now - REGRESSION_AGO
        window_start = window_end - timedelta(hours=24)
        key = {
            "route": route,
            "signal": Signal.objects.get(key="response_time_ms"),
            "environment": Environment.objects.get(slug="production"),
            "cache_segment": "miss",
        }
        if Baseline.objects.filter(**key, active=True).exists():
            return
        Baseline.capture(
            **key,
            start=window_start,
            end=window_end,
            note="Before the related-posts widget (release 1.8.0).",
        )
