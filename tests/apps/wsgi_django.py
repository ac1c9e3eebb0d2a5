"""A small real Django project in one module, for the WSGI tests.

Settings are configured here (once per process), so `apps.wsgi_django:application`
works both in-process and from a spawned server.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

from django.conf import settings

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="steadyloop-tests-only",
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF=__name__,
        MIDDLEWARE=["django.middleware.common.CommonMiddleware"],
        INSTALLED_APPS=[],
        DATABASES={},
        USE_TZ=True,
        LOGGING_CONFIG=None,  # the server owns logging
    )

from django.core.handlers.wsgi import WSGIHandler
from django.core.wsgi import get_wsgi_application
from django.http import (
    FileResponse,
    HttpRequest,
    HttpResponse,
    JsonResponse,
    StreamingHttpResponse,
)
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

DOWNLOAD = {"path": os.environ.get("WSGI_DJANGO_DOWNLOAD", __file__)}


def index(request: HttpRequest) -> HttpResponse:
    return HttpResponse("hello from django")


def user(request: HttpRequest, name: str) -> JsonResponse:
    return JsonResponse({"user": name, "path": request.path, "script_name": request.META["SCRIPT_NAME"]})


@csrf_exempt
def form(request: HttpRequest) -> JsonResponse:
    return JsonResponse(
        {
            "fields": {k: request.POST.getlist(k) for k in request.POST},
            "files": {k: f.size for k, f in request.FILES.items()},
        }
    )


@csrf_exempt
def json_sum(request: HttpRequest) -> JsonResponse:
    data = json.loads(request.body)
    return JsonResponse({"total": sum(data["numbers"]), "echo": data})


def stream(request: HttpRequest) -> StreamingHttpResponse:
    count = int(request.GET.get("n", "5"))

    def lines() -> Iterator[bytes]:
        for i in range(count):
            yield f"line {i}\n".encode()

    return StreamingHttpResponse(lines(), content_type="text/plain")


def download(request: HttpRequest) -> FileResponse:
    return FileResponse(open(DOWNLOAD["path"], "rb"), as_attachment=True)


def boom(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("django view failed")


urlpatterns = [
    path("", index),
    path("users/<str:name>", user),
    path("form", form),
    path("json", json_sum),
    path("stream", stream),
    path("download", download),
    path("boom", boom),
]

class _ThisModulesUrls(WSGIHandler):
    """Resolve against this module's urlpatterns even when another test app configured
    Django first in this process (settings, and so ROOT_URLCONF, are once per process)."""

    def get_response(self, request: HttpRequest) -> HttpResponse:
        request.urlconf = __name__
        return super().get_response(request)


get_wsgi_application()  # django.setup() and its checks, as a deployment would do
application = _ThisModulesUrls()
