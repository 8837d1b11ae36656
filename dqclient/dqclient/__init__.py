"""dqclient: report response time, errors, cache status and DB calls per route to dq-registry.

    from dqclient.asgi import DQMiddleware      # FastAPI / Starlette
    from dqclient.wsgi import DQMiddleware      # any WSGI app
    "dqclient.django.DQMiddleware"              # Django MIDDLEWARE entry

The core has no dependencies beyond the standard library.
"""

from .measure import cache_status, django_route_template
from .reporter import Reporter, __version__, configure, get_reporter
from .transport import HttpTransport, Response

__all__ = [
    "HttpTransport",
    "Reporter",
    "Response",
    "__version__",
    "cache_status",
    "configure",
    "django_route_template",
    "get_reporter",
]
