"""Real Flask and Django apps served by steadyloop: what a team moving over would try first."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import RunningServer, running_server

from steadyloop.wsgi.bridge import WSGIBridge
from steadyloop.wsgi.filewrapper import FileWrapper


@pytest.fixture(scope="module")
def download_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("downloads") / "report.bin"
    path.write_bytes(os.urandom(1_000_000))
    return path


def _load(framework: str, download: Path) -> Any:
    if framework == "flask":
        from apps import wsgi_flask

        wsgi_flask.app.config["DOWNLOAD"] = str(download)
        return wsgi_flask.app
    from apps import wsgi_django

    wsgi_django.DOWNLOAD["path"] = str(download)
    return wsgi_django.application


@pytest.fixture(scope="module", params=["flask", "django"])
def server(request: pytest.FixtureRequest, download_file: Path) -> Iterator[RunningServer]:
    with running_server(_load(request.param, download_file), threads=4, interface="wsgi") as running:
        assert isinstance(running.server.app, WSGIBridge)
        yield running


@pytest.fixture
def client(server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=10) as c:
        yield c


def test_flask_and_django_are_detected_as_wsgi(download_file: Path) -> None:
    from steadyloop.importing import detect_interface

    assert detect_interface(_load("flask", download_file)) == "wsgi"
    assert detect_interface(_load("django", download_file)) == "wsgi"


def test_index(client: httpx.Client) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.text.startswith("hello from ")


def test_routing_with_a_utf8_path(client: httpx.Client) -> None:
    data = client.get("/users/zoë").json()
    assert data["user"] == "zoë"
    assert data["path"] == "/users/zoë"


def test_unknown_route_is_404(client: httpx.Client) -> None:
    assert client.get("/nowhere").status_code == 404


def test_form_post_with_a_file(client: httpx.Client) -> None:
    response = client.post(
        "/form",
        data={"name": "Ada", "tags": ["x", "y"]},
        files={"upload": ("notes.txt", b"n" * 70000, "text/plain")},
    )
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["fields"]["name"] == ["Ada"]
    assert data["fields"]["tags"] == ["x", "y"]
    assert data["files"] == {"upload": 70000}


def test_urlencoded_form_post(client: httpx.Client) -> None:
    data = client.post("/form", data={"city": "Zürich"}).json()
    assert data["fields"] == {"city": ["Zürich"]}


def test_json(client: httpx.Client) -> None:
    response = client.post("/json", json={"numbers": [1, 2, 3.5], "note": "ünïcode"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    data = response.json()
    assert data["total"] == 6.5
    assert data["echo"]["note"] == "ünïcode"


def test_streaming_response(client: httpx.Client) -> None:
    with client.stream("GET", "/stream?n=200") as response:
        assert response.status_code == 200
        assert response.headers.get("transfer-encoding") == "chunked" or "content-length" in response.headers
        text = response.read().decode()
    assert text.splitlines() == [f"line {i}" for i in range(200)]


def test_file_download_goes_out_with_sendfile(
    client: httpx.Client, download_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_iteration(self: FileWrapper) -> Iterator[bytes]:
        raise AssertionError("the file was iterated instead of sent with sendfile")

    monkeypatch.setattr(FileWrapper, "__iter__", no_iteration)
    response = client.get("/download")
    assert response.status_code == 200
    assert response.headers["content-length"] == str(download_file.stat().st_size)
    assert "attachment" in response.headers["content-disposition"]
    assert response.content == download_file.read_bytes()


def test_head_of_a_download(client: httpx.Client, download_file: Path) -> None:
    response = client.head("/download")
    assert response.status_code == 200
    assert response.content == b""
    assert client.get("/").status_code == 200  # the connection carries on cleanly


def test_view_error_is_a_500_and_the_server_carries_on(client: httpx.Client) -> None:
    response = client.get("/boom")
    assert response.status_code == 500
    assert client.get("/").status_code == 200


def test_many_requests_on_one_connection(client: httpx.Client) -> None:
    for i in range(50):
        assert client.get(f"/users/u{i}").json()["user"] == f"u{i}"


def test_root_path_reaches_the_framework(download_file: Path) -> None:
    from apps import wsgi_flask

    with (
        running_server(wsgi_flask.app, root_path="/prefix", interface="wsgi") as running,
        httpx.Client(base_url=running.url) as c,
    ):
        data = c.get("/users/ann").json()
    assert data["script_root"] == "/prefix"
    assert data["path"] == "/users/ann"


def test_flask_abort(download_file: Path) -> None:
    from apps import wsgi_flask

    with running_server(wsgi_flask.app, interface="wsgi") as running, httpx.Client(base_url=running.url) as c:
        assert c.get("/teapot").status_code == 418
