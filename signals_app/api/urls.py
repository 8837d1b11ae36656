from rest_framework.routers import SimpleRouter

# DESIGN.md: API paths are written without a trailing slash; the same path with one
# works too (never a redirect that drops a POST body).
router = SimpleRouter(trailing_slash="/?")

urlpatterns = [*router.urls]
