"""A small Django project in one module, served over ASGI."""

from __future__ import annotations

import json

import django
from django.conf import settings

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="test-only-not-secret",
        ROOT_URLCONF=__name__,
        ALLOWED_HOSTS=["*"],
        INSTALLED_APPS=[],
        MIDDLEWARE=[],
        USE_TZ=True,
    )
    django.setup()

from django.core.asgi import get_asgi_application
from django.core.handlers.asgi import ASGIHandler
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt


def hello(request: HttpRequest) -> HttpResponse:
    return HttpResponse("hello from django", content_type="text/plain")


@csrf_exempt
def echo(request: HttpRequest, name: str) -> JsonResponse:
    return JsonResponse(
        {
            "method": request.method,
            "name": name,
            "query": request.GET.dict(),
            "body": json.loads(request.body) if request.body else None,
            "path": request.path,
        }
    )


async def async_view(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"async": True})


urlpatterns = [
    path("", hello),
    path("echo/<str:name>/", echo),
    path("async/", async_view),
]

class _ThisModulesUrls(ASGIHandler):
    """Resolve against this module's urlpatterns even when another test app configured
    Django first in this process (settings, and so ROOT_URLCONF, are once per process)."""

    async def get_response_async(self, request: HttpRequest) -> HttpResponse:
        request.urlconf = __name__
        return await super().get_response_async(request)


get_asgi_application()  # django.setup() and its checks, as a deployment would do
application = _ThisModulesUrls()
