"""A real FastAPI app over HTTP/2 (ALPN over TLS, with httpx): JSON, a streaming response and
a 10 MiB upload."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator

import httpx
import pytest

from tests.certs import Certs, make_certs
from tests.conftest import RunningServer, running_server


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def server(certs: Certs) -> Iterator[RunningServer]:
    from tests.apps.frameworks import fastapi_app

    with running_server(fastapi_app, **certs.options()) as running:
        yield running


@pytest.fixture
def client(server: RunningServer, certs: Certs) -> Iterator[httpx.Client]:
    base = f"https://127.0.0.1:{server.port}"
    with httpx.Client(http2=True, verify=certs.client_context(), base_url=base, timeout=60) as client:
        yield client


def test_fastapi_json_over_http2(client: httpx.Client) -> None:
    response = client.get("/items/7", params={"q": "h2"})
    assert response.http_version == "HTTP/2"
    assert response.json() == {"item_id": 7, "q": "h2"}
    assert client.post("/items", json={"name": "pen", "price": 2.0}).json()["total"] == 4.0


def test_fastapi_streaming_response_over_http2(client: httpx.Client) -> None:
    with client.stream("GET", "/stream") as response:
        assert response.http_version == "HTTP/2"
        lines = [line for line in response.iter_lines() if line]
    assert lines == [str(i) for i in range(10)]


def test_fastapi_10_mib_upload_over_http2(client: httpx.Client) -> None:
    body = os.urandom(10 * 1024 * 1024)
    info = client.post("/upload", content=body).json()
    assert info == {"length": len(body), "sha256": hashlib.sha256(body).hexdigest(), "http": "2"}
