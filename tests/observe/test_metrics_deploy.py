"""The shipped alert rules and Grafana dashboard only use metric names that exist."""

from __future__ import annotations

import json
import os
import re

import yaml
from conftest import ROOT

from steadyloop.observe.metrics.exposition import ServerView, _Families

SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}


def exported_names() -> set[str]:
    names = set()
    for family in _Families(ServerView([], ready_workers=0)).collect():
        names.update(family.name + suffix for suffix in SUFFIXES[family.type])
    return names


def used_names(text: str) -> set[str]:
    return set(re.findall(r"\bsteadyloop_[a-z_]+", text))


def test_alert_rules_use_exported_metrics() -> None:
    path = os.path.join(ROOT, "deploy", "prometheus", "steadyloop-alerts.yml")
    with open(path) as f:
        rules = yaml.safe_load(f)
    exprs = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    assert len(exprs) >= 5
    for expr in exprs:
        assert used_names(expr) <= exported_names(), expr


def test_dashboard_uses_exported_metrics() -> None:
    path = os.path.join(ROOT, "deploy", "grafana", "steadyloop-dashboard.json")
    with open(path) as f:
        dashboard = json.load(f)
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    used = set().union(*(used_names(e) for e in exprs))
    assert used <= exported_names()
    families = {name.removesuffix("_total").removesuffix("_bucket") for name in used}
    assert len(families) >= 12  # every family has a panel, nearly
