"""A small URLconf standing in for a Django service that uses the middleware."""

from django.db import connection
from django.http import HttpResponse, JsonResponse
from django.urls import include, path, re_path


def health(request):
    return HttpResponse("ok")


def post(request, slug):
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.execute("SELECT 2")
    response = JsonResponse({"slug": slug})
    if slug == "cached":
        response["CF-Cache-Status"] = "HIT"
    return response


def archive(request, year):
    return HttpResponse(year)


def boom(request):
    raise RuntimeError("boom")


def no_db(request, pk):
    return HttpResponse(pk)


urlpatterns = [
    path("health", health),
    path("posts/<slug:slug>", post),
    re_path(r"^archive/(?P<year>[0-9]{4})/$", archive),
    path("api/", include([path("items/<int:pk>", no_db)])),
    path("boom", boom),
]
