from django.urls import re_path
from rest_framework.routers import SimpleRouter

from . import views

# DESIGN.md: API paths are written without a trailing slash; the same path with one
# works too (never a redirect that drops a POST body).
router = SimpleRouter(trailing_slash="/?")

urlpatterns = [
    re_path(r"^readings/?$", views.ReadingsView.as_view(), name="readings"),
    # Other views (evaluation, content) go here, before the router.
    *router.urls,
]
