"""Rate limit per service key, from settings.DQ_INGEST_RATE (e.g. "6000/min")."""

import time

from django.conf import settings
from django.core.cache import cache
from rest_framework.throttling import BaseThrottle, SimpleRateThrottle

from .authentication import is_service


class ServiceKeyRateThrottle(BaseThrottle):
    """A fixed-window counter per key in the default cache.

    DRF's SimpleRateThrottle keeps every request time in a list it re-pickles on each
    request (6,000 entries at the default rate); a counter costs one cache incr. The
    cache is per process unless CACHES points at a shared one, so with N gunicorn
    workers a key may reach up to N times the rate.
    """

    def allow_request(self, request, view):
        if not is_service(request.user):
            return True
        limit, period = SimpleRateThrottle.parse_rate(None, settings.DQ_INGEST_RATE)
        now = time.time()
        window = int(now // period)
        cache_key = f"dq-ingest-rate:{request.user.key.prefix}:{window}"
        if cache.add(cache_key, 1, timeout=period + 1):
            count = 1
        else:
            try:
                count = cache.incr(cache_key)
            except ValueError:  # expired between add and incr
                cache.add(cache_key, 1, timeout=period + 1)
                count = 1
        self._wait = (window + 1) * period - now
        return count <= limit

    def wait(self):
        return self._wait
