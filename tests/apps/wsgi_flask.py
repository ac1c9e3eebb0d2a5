"""A small real Flask app for the WSGI tests: routing, forms, JSON, streaming, files, errors."""

from __future__ import annotations

import os
from collections.abc import Iterator

from flask import Flask, Response, abort, jsonify, request, send_file, stream_with_context

app = Flask(__name__)
# The file /download serves; tests point it at a file of their own.
app.config["DOWNLOAD"] = os.environ.get("WSGI_FLASK_DOWNLOAD", __file__)


@app.get("/")
def index() -> str:
    return "hello from flask"


@app.get("/users/<name>")
def user(name: str) -> dict[str, str]:
    return {"user": name, "script_root": request.script_root, "path": request.path}


@app.post("/form")
def form() -> dict[str, object]:
    return {
        "fields": request.form.to_dict(flat=False),
        "files": {k: len(f.read()) for k, f in request.files.items()},
    }


@app.post("/json")
def json_sum() -> Response:
    data = request.get_json()
    return jsonify(total=sum(data["numbers"]), echo=data)


@app.get("/stream")
def stream() -> Response:
    count = request.args.get("n", 5, type=int)

    def lines() -> Iterator[str]:
        for i in range(count):
            yield f"line {i}\n"

    return Response(stream_with_context(lines()), mimetype="text/plain")


@app.get("/download")
def download() -> Response:
    return send_file(app.config["DOWNLOAD"], mimetype="application/octet-stream", as_attachment=True)


@app.get("/teapot")
def teapot() -> str:
    abort(418)


@app.get("/boom")
def boom() -> str:
    raise RuntimeError("flask view failed")
