"""Rate limit per service key, from settings.DQ_INGEST_RATE (e.g. "6000/min")."""

import logging
import time
from time import monotonic

from django.conf import settings
from django.core.cache import cache
from redis import RedisError
from rest_framework.throttling import BaseThrottle, SimpleRateThrottle

from .authentication import is_service

log = logging.getLogger(__name__)

# What a cache server that is down or unreachable raises (Redis; sockets of other backends).
CACHE_UNAVAILABLE = (RedisError, OSError)
# While the cache is down every request would log: one warning per process this often.
WARN_EVERY_SECONDS = 60
# After a failure the cache is not asked again for this long: a Redis that hangs would
# otherwise cost every request its socket timeout.
SKIP_CACHE_SECONDS = 10


class ServiceKeyRateThrottle(BaseThrottle):
    """A fixed-window counter per key in the default cache (CACHE_URL).

    DRF's SimpleRateThrottle keeps every request time in a list it re-pickles on each
    request (6,000 entries at the default rate); a counter costs one cache incr. With
    the embedded per-process cache, N gunicorn workers let a key reach up to N times the
    rate; with a shared Redis every worker counts in one place. When the cache is
    unreachable the request is let through with a logged warning, and so are the
    process's requests of the next SKIP_CACHE_SECONDS without asking it again: ingestion
    must not fail, nor wait, because the rate limiter's store did.
    """

    _warned_at = None  # when this process last warned that the cache is down
    _down_until = None  # until when this process lets requests through without asking

    def allow_request(self, request, view):
        if not is_service(request.user):
            return True
        limit, period = SimpleRateThrottle.parse_rate(None, settings.DQ_INGEST_RATE)
        now = time.time()
        window = int(now // period)
        self._wait = (window + 1) * period - now
        if self._down_until is not None and monotonic() < self._down_until:
            return True
        try:
            count = self.count(f"dq-ingest-rate:{request.user.key.prefix}:{window}", period)
        except CACHE_UNAVAILABLE as exc:
            type(self)._down_until = monotonic() + SKIP_CACHE_SECONDS
            self.warn_unavailable(exc)
            return True
        return count <= limit

    def count(self, cache_key, period):
        """Count one request in the window's counter and return the count so far."""
        if cache.add(cache_key, 1, timeout=period + 1):
            return 1
        try:
            return cache.incr(cache_key)
        except ValueError:  # expired between add and incr
            cache.add(cache_key, 1, timeout=period + 1)
            return 1

    @classmethod
    def warn_unavailable(cls, exc):
        now = monotonic()
        if cls._warned_at is None or now - cls._warned_at >= WARN_EVERY_SECONDS:
            cls._warned_at = now
            log.warning("ingest rate limit not applied: the cache is unavailable (%s)", exc)

    def wait(self):
        return self._wait
