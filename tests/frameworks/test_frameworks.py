"""Real FastAPI, Starlette and Django (ASGI) apps, served by steadyloop and checked over HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import RunningServer, running_server


@pytest.fixture(scope="module")
def fastapi_server() -> Iterator[RunningServer]:
    from tests.apps.frameworks import fastapi_app

    with running_server(fastapi_app) as running:
        yield running


def test_fastapi_async_and_sync_endpoints(fastapi_server: RunningServer) -> None:
    with httpx.Client(base_url=fastapi_server.url) as client:
        on_loop = client.get("/async").json()
        assert on_loop["message"] == "async"
        assert on_loop["thread"] == "test-server"  # async def runs on the loop thread
        off_loop = client.get("/sync").json()
        assert off_loop["message"] == "sync"
        assert off_loop["thread"] != "test-server"  # def runs on a pool thread


def test_fastapi_path_params_query_and_validation(fastapi_server: RunningServer) -> None:
    with httpx.Client(base_url=fastapi_server.url) as client:
        assert client.get("/items/42", params={"q": "x y"}).json() == {"item_id": 42, "q": "x y"}
        assert client.get("/items/not-a-number").status_code == 422
        assert client.get("/missing").status_code == 404


def test_fastapi_json_body(fastapi_server: RunningServer) -> None:
    with httpx.Client(base_url=fastapi_server.url) as client:
        response = client.post("/items", json={"name": "pen", "price": 1.5, "tags": ["a"]})
        assert response.status_code == 200
        assert response.json() == {"created": {"name": "pen", "price": 1.5, "tags": ["a"]}, "total": 3.0}
        assert client.post("/items", json={"name": "pen"}).status_code == 422


def test_fastapi_streaming(fastapi_server: RunningServer) -> None:
    with httpx.Client(base_url=fastapi_server.url) as client, client.stream("GET", "/stream") as response:
        assert response.headers["transfer-encoding"] == "chunked"
        assert response.read() == b"".join(b"%d\n" % i for i in range(10))


def test_fastapi_many_concurrent_keep_alive_requests(fastapi_server: RunningServer) -> None:
    with httpx.Client(base_url=fastapi_server.url) as client:
        for i in range(50):
            assert client.get(f"/items/{i}").json()["item_id"] == i


def test_starlette_with_lifespan_state() -> None:
    from tests.apps.frameworks import starlette_app

    with (
        running_server(starlette_app, lifespan="on") as running,
        httpx.Client(base_url=running.url) as client,
    ):
        assert client.get("/").text == "hello from starlette"
        seen = client.post("/echo/bob", params={"a": "1"}, content=b"payload").json()
        assert seen == {
            "path": "/echo/bob",
            "name": "bob",
            "query": {"a": "1"},
            "body": "payload",
            "client": "127.0.0.1",
            "state": "yes",
        }


def test_django() -> None:
    from tests.apps.django_app import application

    with running_server(application) as running, httpx.Client(base_url=running.url) as client:
        response = client.get("/")
        assert response.status_code == 200 and response.text == "hello from django"
        seen = client.post("/echo/alice/", params={"x": "1"}, json={"k": [1, 2]}).json()
        assert seen == {
            "method": "POST",
            "name": "alice",
            "query": {"x": "1"},
            "body": {"k": [1, 2]},
            "path": "/echo/alice/",
        }
        assert client.get("/async/").json() == {"async": True}
        assert client.get("/nope/").status_code == 404
