"""Settings for dq-registry, read from the environment through django-environ.

The defaults run locally (DEBUG on, SQLite file in the checkout). With DEBUG off,
SECRET_KEY and ALLOWED_HOSTS must be set and the secure defaults switch on.
"""

import logging
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()


def _read(name, cast, default):
    """Read one variable; a malformed value names the variable and the expected form."""
    try:
        return cast(name, default=default)
    except (ValueError, TypeError) as exc:
        raise ImproperlyConfigured(
            f"{name} is malformed ({exc}); see the table of variables in README.md"
        ) from exc


def _whole_number(name, default, *, low, high=None, meaning):
    """An integer variable within [low, high]; `meaning` says what it counts."""
    value = _read(name, env.int, default)
    if value < low or (high is not None and value > high):
        expected = f"from {low} to {high}" if high is not None else f"{low} or more"
        raise ImproperlyConfigured(
            f"{name} is out of range: expected {meaning}, {expected}; received {value}"
        )
    return value


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _strict_bool(name, default):
    """Like env.bool, but a value that is neither true nor false is an error, not False."""
    raw = env.str(name, default=None)
    if raw is None:
        return default
    if raw.strip().lower() in _TRUE | _FALSE:
        return raw.strip().lower() in _TRUE
    raise ValueError(f"expected one of on/off, true/false, 1/0, yes/no; received {raw!r}")


DEBUG = _read("DEBUG", _strict_bool, True)

if DEBUG:
    SECRET_KEY = env.str("SECRET_KEY", default="django-insecure-local-development-only")
    ALLOWED_HOSTS = env.list(
        "ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"]
    )
else:
    SECRET_KEY = env.str("SECRET_KEY", default="")
    if not SECRET_KEY:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set: with DEBUG off it is required "
            "(expected a long random string, e.g. from "
            "`python -c 'import secrets; print(secrets.token_urlsafe(50))'`)"
        )
    ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=[])
    if not ALLOWED_HOSTS:
        raise ImproperlyConfigured(
            "ALLOWED_HOSTS is not set: with DEBUG off it is required "
            "(expected a comma-separated list of host names, e.g. dq.example.com)"
        )

CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "simple_history",
    "signals_app",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # /api/: 413 before the body is read, problem details for errors outside DRF views.
    "signals_app.api.middleware.ApiProblemMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "simple_history.middleware.HistoryRequestMiddleware",
    # /admin/: a NUL in a query parameter (PostgreSQL text cannot hold it), a date lookup out
    # of range or an action on rows not named by ids is a 400.
    "signals_app.middleware.AdminInputMiddleware",
]

ROOT_URLCONF = "dqregistry.urls"
WSGI_APPLICATION = "dqregistry.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Django's form templates, with the input and textarea widgets written out in Python (the
# same markup; ~30 ms of a route page's hundred inputs).
FORM_RENDERER = "signals_app.forms.FastRenderer"

# The embedded default is a SQLite file in the checkout; production is PostgreSQL
# through psycopg 3, e.g. postgres://user:pass@host:5432/dqregistry
_DATABASE_ENGINES = {"django.db.backends.sqlite3", "django.db.backends.postgresql"}


def _database_url(name, default):
    """DATABASE_URL through env.db_url, for the two databases the registry runs on. The
    error shows the scheme received, never the whole URL (it may hold a password)."""
    url = env.str(name, default=default) or default
    scheme = url.partition("://")[0] if "://" in url else None
    config = env.db_url_config(url) if scheme else {}
    if config.get("ENGINE") not in _DATABASE_ENGINES:
        received = f"the scheme {scheme!r}" if scheme else "a value without '<scheme>://'"
        raise ValueError(
            "expected postgres://user:pass@host:5432/dqregistry or sqlite:///path/db.sqlite3; "
            f"received {received}"
        )
    return config


DATABASES = {
    "default": _read("DATABASE_URL", _database_url, f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
}
DATABASES["default"]["CONN_MAX_AGE"] = _read("CONN_MAX_AGE", env.int, 60)
# Off by default: a health check is one more round trip on every request (a third of a
# single-reading POST). A connection that died with the database fails one request per
# worker (a retryable 503 on the API) and is then replaced, as after any database error.
DATABASES["default"]["CONN_HEALTH_CHECKS"] = _read("CONN_HEALTH_CHECKS", _strict_bool, False)
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # /ready and the 503 path must answer quickly when the database is gone.
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault("connect_timeout", 5)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Concurrent writers (gunicorn workers, the clock) wait instead of failing at once.
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault("timeout", 20)
    DATABASES["default"]["OPTIONS"].setdefault("transaction_mode", "IMMEDIATE")

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

_REDIS_CACHE = "django.core.cache.backends.redis.RedisCache"


def _cache_url(name, default):
    """CACHE_URL through env.cache_url; redis:// always means Django's own RedisCache
    (django-environ would take django_redis's if that happened to be installed)."""
    url = env.str(name, default=default) or default
    redis = url.startswith(("redis://", "rediss://", "rediscache://"))
    try:
        config = env.cache_url_config(url, backend=_REDIS_CACHE if redis else None)
    except ImproperlyConfigured:
        raise ValueError(
            f"expected a cache URL such as locmemcache:// or redis://host:6379/0; received {url!r}"
        ) from None
    if config["BACKEND"] == _REDIS_CACHE:
        from redis.connection import parse_url

        for location in str(config["LOCATION"]).split(","):
            # A malformed location (port not a number, out of range) fails here, not on every
            # request; start-up never connects, so an unreachable host fails open per request.
            try:
                parse_url(location)
            except ValueError as exc:
                raise ValueError(
                    f"{exc}: expected a cache URL such as redis://host:6379/0; received {url!r}"
                ) from None
        # An unreachable Redis must cost a request little: the throttle then lets it through
        # (and skips the cache for a while). Same host, answers in well under a millisecond.
        options = config.setdefault("OPTIONS", {})
        options.setdefault("socket_connect_timeout", 0.1)
        options.setdefault("socket_timeout", 0.1)
    return config


# The ingest rate limit counts in the default cache. The embedded default is per
# process (N gunicorn workers let a key through N times the rate); production shares
# one Redis, e.g. redis://127.0.0.1:6379/0.
CACHES = {"default": _read("CACHE_URL", _cache_url, "locmemcache://")}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
# Hashed names with far-future cache headers: the CDN may cache them forever.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

LOGIN_URL = "admin:login"

# Behind a CDN or load balancer that terminates TLS, e.g. "HTTP_X_FORWARDED_PROTO,https".
_proxy_header = _read("SECURE_PROXY_SSL_HEADER", env.tuple, ())
if _proxy_header and len(_proxy_header) != 2:
    raise ImproperlyConfigured(
        "SECURE_PROXY_SSL_HEADER is malformed: expected 'HEADER,value', "
        f"e.g. HTTP_X_FORWARDED_PROTO,https; received {','.join(_proxy_header)!r}"
    )
SECURE_PROXY_SSL_HEADER = _proxy_header or None
SECURE_SSL_REDIRECT = _read("SECURE_SSL_REDIRECT", _strict_bool, not DEBUG)
# /health and /ready are probed over plain HTTP by load balancers.
SECURE_REDIRECT_EXEMPT = [r"^health$", r"^ready$"]
SECURE_HSTS_SECONDS = _read("SECURE_HSTS_SECONDS", env.int, 0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = _read("SECURE_HSTS_INCLUDE_SUBDOMAINS", _strict_bool, not DEBUG)
SECURE_HSTS_PRELOAD = _read("SECURE_HSTS_PRELOAD", _strict_bool, False)
SESSION_COOKIE_SECURE = _read("SESSION_COOKIE_SECURE", _strict_bool, not DEBUG)
CSRF_COOKIE_SECURE = _read("CSRF_COOKIE_SECURE", _strict_bool, not DEBUG)
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

REST_FRAMEWORK = {
    # Service keys first: its `Bearer` challenge makes a missing key a 401, not a 403.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "signals_app.api.authentication.ServiceKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.TokenAuthentication",
    ],
    "EXCEPTION_HANDLER": "signals_app.api.problems.exception_handler",
    # The API speaks JSON only: a form or multipart body is a 415.
    # Nesting deeper than signals_app.api.parsers.MAX_DEPTH is a 400, never a RecursionError.
    "DEFAULT_PARSER_CLASSES": ["signals_app.api.parsers.JSONParser"],
    # A stored number JSON cannot carry (inf) is null, not a 500.
    "DEFAULT_RENDERER_CLASSES": [
        "signals_app.api.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.CursorPagination",
    "PAGE_SIZE": 100,
    # Invalid parameters are problems naming what each expects and received.
    "DEFAULT_FILTER_BACKENDS": ["signals_app.api.filters.FilterBackend"],
    # drf-spectacular's AutoSchema, plus the problem-details responses of every operation.
    "DEFAULT_SCHEMA_CLASS": "signals_app.api.schema.ProblemAutoSchema",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "dq-registry API",
    "DESCRIPTION": "Readings, thresholds, baselines, changes and reviews of data quality signals.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Separate request components, so read-only fields (id) are not asked of clients.
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "signals_app.api.schema.without_trailing_slashes",
        "signals_app.api.schema.closed_request_bodies",
    ],
}

# Registry behaviour.
DQ_INGEST_RATE = _read("DQ_INGEST_RATE", env.str, "6000/min")
try:
    _count, _, _period = DQ_INGEST_RATE.partition("/")
    if int(_count) < 1 or _period[:1] not in {"s", "m", "h", "d"}:
        raise ValueError
except ValueError:
    raise ImproperlyConfigured(
        "DQ_INGEST_RATE is malformed: expected requests per service key and period, "
        f"e.g. 6000/min or 100/s (periods s, min, hour, day); received {DQ_INGEST_RATE!r}"
    ) from None
# Service keys and route/signal/environment ids are remembered per process this long:
# a revoked key stops working, a removed name is forgotten, within it (0: off).
DQ_INGEST_CACHE_SECONDS = _whole_number(
    "DQ_INGEST_CACHE_SECONDS", 10, low=0, meaning="seconds (0 turns the cache off)"
)
DQ_METRICS_TOKEN = _read("DQ_METRICS_TOKEN", env.str, "")
# Pruning (`python manage.py prune`, hourly from the clock). The ingestion contract
# promises at least these memories, so shorter settings are refused.
DQ_IDEMPOTENCY_HOURS = _read("DQ_IDEMPOTENCY_HOURS", env.int, 24)
if DQ_IDEMPOTENCY_HOURS < 24:
    raise ImproperlyConfigured(
        "DQ_IDEMPOTENCY_HOURS is too small: Idempotency-Key requests are remembered at least "
        f"24 hours (DESIGN.md, Ingestion contract); expected 24 or more, received "
        f"{DQ_IDEMPOTENCY_HOURS}"
    )
DQ_READING_RETENTION_DAYS = _read("DQ_READING_RETENTION_DAYS", env.int, 0)
if DQ_READING_RETENTION_DAYS != 0 and DQ_READING_RETENTION_DAYS < 7:
    raise ImproperlyConfigured(
        "DQ_READING_RETENTION_DAYS is too small: a reading's idempotency_key is remembered at "
        "least 7 days (DESIGN.md, Ingestion contract); expected 0 (keep readings forever) or "
        f"7 or more, received {DQ_READING_RETENTION_DAYS}"
    )
# The clock stores one EvaluationRun a minute (~43,000 in 30 days) and only the latest is read;
# prune always keeps the latest finished run, however old. No "keep forever" here, so 0 is
# refused rather than read as "delete them all" or, as for readings, "keep them all".
DQ_EVALUATION_RUN_RETENTION_DAYS = _read("DQ_EVALUATION_RUN_RETENTION_DAYS", env.int, 30)
if DQ_EVALUATION_RUN_RETENTION_DAYS < 1:
    raise ImproperlyConfigured(
        "DQ_EVALUATION_RUN_RETENTION_DAYS is too small: evaluation runs are kept at least 1 day "
        "and are always pruned (0 does not mean forever here); expected 1 or more, received "
        f"{DQ_EVALUATION_RUN_RETENTION_DAYS}"
    )
# Delivered, skipped and failed notifications (pending ones are never pruned).
DQ_NOTIFICATION_RETENTION_DAYS = _read("DQ_NOTIFICATION_RETENTION_DAYS", env.int, 30)
if DQ_NOTIFICATION_RETENTION_DAYS < 1:
    raise ImproperlyConfigured(
        "DQ_NOTIFICATION_RETENTION_DAYS is too small: finished notifications are kept at least "
        "1 day and are always pruned (0 does not mean forever here); expected 1 or more, "
        f"received {DQ_NOTIFICATION_RETENTION_DAYS}"
    )
# Webhook deliveries go only to public addresses: owners set their webhook URL and read the
# receiver's answer, so a private one (127.0.0.1, 169.254.169.254, 10.x) would let them reach
# internal services. On for an installation whose receivers are on its private network.
DQ_WEBHOOK_ALLOW_PRIVATE = _read("DQ_WEBHOOK_ALLOW_PRIVATE", _strict_bool, False)
DQ_CONTENT_MIN_SCORE = _whole_number("DQ_CONTENT_MIN_SCORE", 70, low=0, high=100, meaning="a score")
DQ_REHEARSAL_MAX_AGE_DAYS = _whole_number(
    "DQ_REHEARSAL_MAX_AGE_DAYS",
    90,
    low=1,
    high=36_500,  # a century; more overflowed the date arithmetic of ?rehearsal=stale
    meaning="days a rehearsal stays fresh",
)
# The board reloads itself this often; under 5 seconds it would mostly be reloading.
DQ_BOARD_REFRESH_SECONDS = _whole_number(
    "DQ_BOARD_REFRESH_SECONDS", 60, low=5, meaning="seconds between reloads of /board"
)


# The names Python's logging takes (WARN and FATAL included), as LOG_LEVEL always could.
_LOG_LEVELS = tuple(logging.getLevelNamesMapping())


def _log_level(name, default):
    level = env.str(name, default=default).strip().upper()
    if level not in _LOG_LEVELS:
        raise ValueError(f"expected one of {', '.join(_LOG_LEVELS)}; received {level!r}")
    return level


LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": _read("LOG_LEVEL", _log_level, "INFO")},
    # httpx logs every request's whole URL at INFO: a webhook URL often holds its secret.
    "loggers": {"httpx": {"level": "WARNING"}},
}
