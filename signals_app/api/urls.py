from django.urls import re_path
from rest_framework.routers import SimpleRouter

from . import content_views, views

# DESIGN.md: API paths are written without a trailing slash; the same path with one
# works too (never a redirect that drops a POST body).
# (SimpleRouter's argument is a flag that means "/", so the pattern is set afterwards.)
router = SimpleRouter()
router.trailing_slash = "/?"
router.register("routes", views.RouteViewSet, basename="route")
router.register("signals", views.SignalViewSet, basename="signal")
router.register("environments", views.EnvironmentViewSet, basename="environment")
router.register("thresholds", views.ThresholdViewSet, basename="threshold")
router.register("baselines", views.BaselineViewSet, basename="baseline")
router.register("changes", views.ChangeViewSet, basename="change")
router.register("rollback-notes", views.RollbackNoteViewSet, basename="rollback-note")
router.register("content", content_views.ContentItemViewSet, basename="content")

urlpatterns = [
    re_path(r"^readings/?$", views.ReadingsView.as_view(), name="readings"),
    # Other views (evaluation, content) go here, before the router.
    re_path(
        r"^content/(?P<reference>[\w.\-]+)/reviews/?$",
        content_views.ContentReviewsView.as_view(),
        name="content-reviews",
    ),
    *router.urls,
]
