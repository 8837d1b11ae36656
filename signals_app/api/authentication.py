"""Service keys in `Authorization: Bearer dq_<prefix>.<secret>`.

People use session login or a personal token (`Authorization: Token <key>`, DRF's
TokenAuthentication); services use their keys, which can only post readings and read
their own routes.
"""

import time

from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from signals_app.models import ServiceKey


class ServicePrincipal:
    """`request.user` of a request made with a service key: not a person, no Django perms."""

    is_authenticated = True
    is_anonymous = False
    is_active = True
    is_staff = False
    is_superuser = False
    pk = id = None

    def __init__(self, key):
        self.key = key
        self.service = key.service

    @property
    def username(self):
        return f"service:{self.service.slug}"

    def __str__(self):
        return self.username

    def has_perm(self, perm, obj=None):
        return False


class KeyCache:
    """Keys this process authenticated lately, by the full key string.

    Saves the lookup on most requests of a busy key; a key revoked or expired in the
    database stops working within settings.DQ_INGEST_CACHE_SECONDS (0 turns this off).
    An entry is found only by the exact secret that was verified against the hash.
    """

    MAX_ENTRIES = 1000

    def __init__(self):
        self.entries = {}

    def clear(self):
        self.entries.clear()

    def get(self, raw):
        entry = self.entries.get(raw)
        if entry is None:
            return None
        until, key = entry
        if time.monotonic() >= until or not key.is_active:
            self.entries.pop(raw, None)
            return None
        return key

    def remember(self, raw, key):
        seconds = settings.DQ_INGEST_CACHE_SECONDS
        if seconds <= 0:
            return
        if len(self.entries) >= self.MAX_ENTRIES:
            self.entries.clear()
        self.entries[raw] = (time.monotonic() + seconds, key)


keys = KeyCache()


def is_service(user):
    return isinstance(user, ServicePrincipal)


class ServiceKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        parts = authentication.get_authorization_header(request).split()
        if not parts or parts[0].lower() != self.keyword.lower().encode():
            return None
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed(
                "expected `Authorization: Bearer dq_<prefix>.<secret>`"
            )
        try:
            raw = parts[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("the API key is unknown") from None
        key = keys.get(raw)
        if key is None:
            key, reason = ServiceKey.authenticate(raw)
            if key is None:
                raise exceptions.AuthenticationFailed(reason)
            keys.remember(raw, key)
        key.touch()
        return ServicePrincipal(key), key

    def authenticate_header(self, request):
        return f'{self.keyword} realm="api"'


class ServiceKeyScheme(OpenApiAuthenticationExtension):
    target_class = ServiceKeyAuthentication
    name = "serviceKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "dq_<prefix>.<secret>",
            "description": "A service key: posts readings and reads its own service's routes.",
        }
