from django.urls import re_path
from rest_framework.routers import SimpleRouter

from . import content_views, evaluation_views, views

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
        r"^routes/(?P<pk>[0-9]+)/status/?$",
        evaluation_views.RouteStatusView.as_view(),
        name="route-status",
    ),
    re_path(
        r"^routes/(?P<pk>[0-9]+)/comparison/?$",
        evaluation_views.RouteComparisonView.as_view(),
        name="route-comparison",
    ),
    re_path(
        r"^changes/(?P<pk>[0-9]+)/comparison/?$",
        evaluation_views.ChangeComparisonView.as_view(),
        name="change-comparison",
    ),
    re_path(
        r"^baselines/capture/?$",
        evaluation_views.BaselineCaptureView.as_view(),
        name="baseline-capture",
    ),
    re_path(
        r"^content/(?P<reference>[\w.\-]+)/reviews/?$",
        content_views.ContentReviewsView.as_view(),
        name="content-reviews",
    ),
    *router.urls,
]
