"""deploy/Dockerfile and deploy/kubernetes/*.yaml: parsed (there is no cluster here), held to
each other and to steadyloop's shutdown, and the container's own command line run for real."""

from __future__ import annotations

import json
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import yaml

from steadyloop.config import LogOptions
from tests.conftest import ROOT, free_port, stop, wait_for_port
from tests.e2e.test_cli import child_env

DEPLOY = Path(ROOT, "deploy")


def dockerfile() -> tuple[list[str], dict[str, str]]:
    """The Dockerfile's CMD (exec form) and ENV, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", (DEPLOY / "Dockerfile").read_text())
    cmd: list[str] = []
    env: dict[str, str] = {}
    for line in text.splitlines():
        instruction, _, rest = line.strip().partition(" ")
        if instruction == "CMD":
            cmd = json.loads(rest)
        elif instruction == "ENV":
            env.update(part.split("=", 1) for part in shlex.split(rest))
    return cmd, env


def deployment() -> dict[str, Any]:
    return dict(yaml.safe_load((DEPLOY / "kubernetes" / "deployment.yaml").read_text()))


def container() -> dict[str, Any]:
    (only,) = deployment()["spec"]["template"]["spec"]["containers"]
    return dict(only)


def flag_value(cmd: list[str], flag: str) -> str:
    return cmd[cmd.index(flag) + 1]


def test_the_manifests_parse_and_name_each_other() -> None:
    docs = [yaml.safe_load(p.read_text()) for p in sorted((DEPLOY / "kubernetes").glob("*.yaml"))]
    kinds = {d["kind"]: d for d in docs}
    assert set(kinds) == {"Deployment", "Service"}
    labels = kinds["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert kinds["Deployment"]["spec"]["selector"]["matchLabels"] == labels
    assert kinds["Service"]["spec"]["selector"] == labels
    port_names = {p["name"] for p in container()["ports"]}
    assert {p["targetPort"] for p in kinds["Service"]["spec"]["ports"]} <= port_names


def test_the_grace_period_covers_prestop_and_graceful_shutdown() -> None:
    cmd, _ = dockerfile()
    graceful = float(flag_value(cmd, "--timeout-graceful-shutdown"))
    pre_stop = container()["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    grace = deployment()["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace >= float(pre_stop[1]) + graceful + LogOptions().drain_timeout


def test_workers_match_the_cpu_limit_and_probes_use_the_served_port() -> None:
    c = container()
    env = {e["name"]: e["value"] for e in c["env"]}
    assert int(env["STEADYLOOP_WORKERS"]) == int(c["resources"]["limits"]["cpu"])
    assert c["resources"]["limits"]["memory"] and c["resources"]["requests"]["cpu"]
    _, image_env = dockerfile()
    assert c["ports"][0]["containerPort"] == int(image_env["STEADYLOOP_PORT"])
    for probe in ("readinessProbe", "livenessProbe"):
        assert c[probe]["httpGet"]["port"] == c["ports"][0]["name"]
    assert c["livenessProbe"]["failureThreshold"] * c["livenessProbe"]["periodSeconds"] > (
        c["readinessProbe"]["failureThreshold"] * c["readinessProbe"]["periodSeconds"]
    )


def test_the_containers_command_serves_the_probes_and_stops_cleanly(tmp_path: Path) -> None:
    """The CMD as the container runs it, with the image's ENV and the pod's env on top;
    only the app (the demo, which has /health) and the port are this test's."""
    cmd, env = dockerfile()
    assert cmd[0] == "steadyloop"
    pod_env = {e["name"]: e["value"] for e in container()["env"]}
    port = free_port()
    env.update(pod_env, STEADYLOOP_APP="", STEADYLOOP_PORT=str(port))
    executable = str(Path(sys.executable).parent / "steadyloop")  # the console script, as in the image
    log = tmp_path / "log"
    with log.open("w") as out:
        proc = subprocess.Popen([executable, *cmd[1:]], env=child_env(env), cwd=ROOT, stdout=out, stderr=out)
        try:
            wait_for_port(port, proc=proc)
            c = container()
            for probe in ("readinessProbe", "livenessProbe"):
                response = httpx.get(f"http://127.0.0.1:{port}{c[probe]['httpGet']['path']}", timeout=5)
                assert response.status_code == 200
            proc.send_signal(signal.SIGTERM)  # what the kubelet sends after preStop
            assert proc.wait(30) == 0
        finally:
            stop(proc)
    text = log.read_text()
    assert f"serving on http://0.0.0.0:{port} with 2 workers" in text
    assert "\x1b[" not in text


def test_docs_deployment_shows_every_deploy_file_as_it_is() -> None:
    page = Path(ROOT, "docs", "deployment.md").read_text()
    for name in ("nginx.conf", "steadyloop.service", "steadyloop.socket", "Dockerfile"):
        assert (DEPLOY / name).read_text() in page, name
    for path in (DEPLOY / "kubernetes").glob("*.yaml"):
        assert path.read_text() in page, path.name
