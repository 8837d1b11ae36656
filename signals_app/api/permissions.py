"""§Roles of DESIGN.md as DRF permissions."""

from rest_framework import permissions

from signals_app.models import Route

from .authentication import is_service


class IsServiceKey(permissions.BasePermission):
    message = "readings are posted with a service key (Authorization: Bearer dq_...)"

    def has_permission(self, request, view):
        return is_service(request.user)


class IsPersonOrServiceReading(permissions.BasePermission):
    """People read; a service key reads only the views that allow it (its routes)."""

    message = "a service key may only post readings and read its own service's routes"

    def has_permission(self, request, view):
        if not is_service(request.user):
            return True
        return request.method in permissions.SAFE_METHODS and getattr(
            view, "service_keys_may_read", False
        )


class IsSuperuserOrReadOnly(permissions.BasePermission):
    message = "only administrators change this vocabulary"

    def has_permission(self, request, view):
        return request.method in permissions.SAFE_METHODS or request.user.is_superuser


class OwnsRoute(permissions.BasePermission):
    """Writes only on objects of routes the person owns (Route.objects.owned_by)."""

    message = "you may change only objects of routes your team owns"

    def has_object_permission(self, request, view, obj):
        if request.method in permissions.SAFE_METHODS:
            return True
        route_id = obj.pk if isinstance(obj, Route) else obj.route_id
        return Route.objects.owned_by(request.user).filter(pk=route_id).exists()


class RoutePermission(permissions.BasePermission):
    """Owners of a route edit it; registering one is checked against the named service
    (RouteViewSet); deleting a route, and with it its readings, is for superusers."""

    message = "you may change only routes your team owns; only administrators delete routes"

    def has_object_permission(self, request, view, obj):
        if request.method in permissions.SAFE_METHODS:
            return True
        if request.method == "DELETE":
            return request.user.is_superuser
        return Route.objects.owned_by(request.user).filter(pk=obj.pk).exists()
