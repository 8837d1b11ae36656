from django.urls import re_path
from rest_framework.routers import SimpleRouter

from . import content_views, views

# DESIGN.md: API paths are written without a trailing slash; the same path with one
# works too (never a redirect that drops a POST body).
router = SimpleRouter()
# Set after construction: SimpleRouter(trailing_slash=...) turns any true value into "/".
router.trailing_slash = "/?"
router.register(r"content", content_views.ContentItemViewSet, basename="content")

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
