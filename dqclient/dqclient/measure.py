"""What the middlewares share: cache status from CDN headers, route templates, exclusions."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

UNKNOWN = "UNKNOWN"

# The CDN headers we read, in order of preference. The first one that says something we
# understand wins; Age comes last because it only tells "served from a cache" (Age > 0).
CACHE_HEADERS = ("cf-cache-status", "x-cache", "x-cache-status", "age")
CACHE_HEADERS_BYTES = frozenset(name.encode() for name in CACHE_HEADERS)
# A length check first skips most headers without lowering them.
_LONGEST_CACHE_HEADER = max(map(len, CACHE_HEADERS))

_CACHE_WORDS = {
    "hit": "HIT",
    "miss": "MISS",
    "stale": "STALE",
    "expired": "EXPIRED",
    "bypass": "BYPASS",
    "revalidated": "REVALIDATED",
    "dynamic": "DYNAMIC",
    # nginx and Cloudflare serve the stale copy while they update it.
    "updating": "STALE",
    # CloudFront: "RefreshHit from cloudfront" is a conditional revalidation.
    "refreshhit": "REVALIDATED",
    # Varnish: pass means the request went to the origin on purpose.
    "pass": "BYPASS",
}


def cache_status_word(value: str) -> str | None:
    """Normalise one CDN header value ("Hit from cloudfront", "MISS, HIT", "TCP_HIT") or None."""
    value = value.strip().lower()
    if "," in value:
        # Layered caches append: "MISS, HIT" is shield MISS then edge HIT; the last layer
        # is the one closest to the user, so it decides what the user got.
        value = value.rsplit(",", 1)[1].strip()
    if not value:
        return None
    word = value.split(None, 1)[0]
    status = _CACHE_WORDS.get(word)
    if status is None:
        # Squid and friends: TCP_HIT, TCP_MEM_HIT, TCP_MISS, TCP_REFRESH_MISS...
        if word.endswith("hit"):
            status = "HIT"
        elif word.endswith("miss"):
            status = "MISS"
    return status


def cache_status(get: Callable[[str], str | None]) -> str:
    """Cache status from response headers; `get(lowercase_name)` returns a value or None."""
    for name in CACHE_HEADERS[:3]:
        value = get(name)
        if value:
            status = cache_status_word(value)
            if status is not None:
                return status
    age = get("age")
    if age:
        try:
            if int(age.strip()) > 0:
                return "HIT"
        except ValueError:
            pass
    return UNKNOWN


def cache_status_from_asgi(headers: Iterable[tuple[bytes, bytes]] | None) -> str:
    """Cache status from ASGI response headers (a list of (name, value) byte pairs)."""
    if not headers:
        return UNKNOWN
    found = None
    for name, value in headers:
        if len(name) <= _LONGEST_CACHE_HEADER and name.lower() in CACHE_HEADERS_BYTES:
            if found is None:
                found = {}
            found.setdefault(name.lower().decode("latin-1"), value.decode("latin-1"))
    if found is None:
        return UNKNOWN
    return cache_status(found.get)


def cache_status_from_wsgi(headers: Iterable[tuple[str, str]] | None) -> str:
    """Cache status from WSGI response headers (a list of (name, value) str pairs)."""
    if not headers:
        return UNKNOWN
    found = None
    for name, value in headers:
        lowered = name.lower()
        if lowered in CACHE_HEADERS:
            if found is None:
                found = {}
            found.setdefault(lowered, value)
    if found is None:
        return UNKNOWN
    return cache_status(found.get)


_DJANGO_CONVERTER = re.compile(r"<(?:[^<>:]+:)?([^<>:]+)>")


def _replace_named_groups(pattern: str) -> str:
    """(?P<name>...) -> {name}, with nested parentheses inside the group."""
    out = []
    i = 0
    while i < len(pattern):
        start = pattern.find("(?P<", i)
        if start < 0:
            out.append(pattern[i:])
            break
        out.append(pattern[i:start])
        end_name = pattern.find(">", start)
        if end_name < 0:
            out.append(pattern[start:])
            break
        name = pattern[start + 4 : end_name]
        depth = 1
        j = end_name + 1
        while j < len(pattern) and depth:
            char = pattern[j]
            if char == "\\":
                j += 2
                continue
            if char == "(":
                depth += 1
            elif char == ")":
                depth -= 1
            j += 1
        out.append("{" + name + "}")
        i = j
    return "".join(out)


def django_route_template(route: str) -> str:
    """Django's resolver route to the registry's template style.

    `posts/<slug:slug>` -> `/posts/{slug}`, `^posts/(?P<pk>[0-9]+)/$` -> `/posts/{pk}/`.
    """
    if "(?P<" in route or route.startswith("^") or "^" in route:
        # re_path routes are joined with their includes' patterns, each with its own ^ and $.
        route = _replace_named_groups(route)
        route = route.replace("^", "").replace("\\Z", "").replace("$", "")
        route = route.replace("\\.", ".").replace("\\-", "-").replace("\\/", "/")
        # DRF routers with trailing_slash="/?" make the slash optional: the path is without.
        if route.endswith("/?"):
            route = route[:-2]
    elif "<" in route:
        route = _DJANGO_CONVERTER.sub(r"{\1}", route)
    if not route.startswith("/"):
        route = "/" + route
    return route


_TEMPLATE_PARAM = re.compile(r"\{([^{}:]+)(?::([^{}]+))?\}")


def compile_templates(templates: Iterable[str]) -> Callable[[str], str | None]:
    """A matcher from a path to the first template it fits (`/posts/{slug}`, `/files/{p:path}`)."""
    compiled = []
    for template in templates:
        parts = []
        last = 0
        for match in _TEMPLATE_PARAM.finditer(template):
            parts.append(re.escape(template[last : match.start()]))
            parts.append(".+" if match.group(2) == "path" else "[^/]+")
            last = match.end()
        parts.append(re.escape(template[last:]))
        compiled.append((re.compile("".join(parts) + r"\Z"), template))

    def match(path: str) -> str | None:
        for regex, template in compiled:
            if regex.match(path):
                return template
        return None

    return match


class Exclusions:
    """Paths that are not measured: exact paths, or prefixes written with a trailing `*`."""

    __slots__ = ("exact", "prefixes")

    def __init__(self, paths: Iterable[str] = ()) -> None:
        paths = list(paths)
        self.exact = frozenset(p for p in paths if not p.endswith("*"))
        self.prefixes = tuple(p[:-1] for p in paths if p.endswith("*"))

    def __contains__(self, path: str) -> bool:
        if path in self.exact:
            return True
        return bool(self.prefixes) and path.startswith(self.prefixes)
