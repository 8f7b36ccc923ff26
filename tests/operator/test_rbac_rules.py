"""The shipped RBAC rules grant what the operator calls, and nothing broader."""

from __future__ import annotations

from importlib import resources
from typing import Any

import yaml


def rules() -> list[dict[str, Any]]:
    text = resources.files("backtest_kit_operator").joinpath("rbac.yaml").read_text()
    operator_role = next(yaml.safe_load_all(text))
    assert operator_role["kind"] == "ClusterRole"
    return list(operator_role["rules"])


def allowed(group: str, resource: str) -> set[str]:
    verbs: set[str] = set()
    for rule in rules():
        if group in rule["apiGroups"] and resource in rule["resources"]:
            verbs.update(rule["verbs"])
    return verbs


def test_the_role_covers_every_call_the_operator_makes() -> None:
    assert {"get", "list", "watch", "patch"} <= allowed("backtestkit.dev", "livetraders")
    assert {"get", "list", "watch", "patch"} <= allowed("backtestkit.dev", "walkers")
    assert {"patch"} <= allowed("backtestkit.dev", "livetraders/status")
    assert {"patch"} <= allowed("backtestkit.dev", "walkers/status")
    assert {"get", "list", "watch", "create", "delete"} <= allowed("", "pods")
    assert {"get", "create", "delete"} <= allowed("", "persistentvolumeclaims")
    assert {"get", "list", "watch", "create"} <= allowed("batch", "jobs")
    assert {"get", "create", "patch"} <= allowed("", "configmaps")


def test_the_role_has_no_wildcards_secrets_or_update_verbs_beyond_owner_finalizers() -> None:
    for rule in rules():
        assert "*" not in rule["verbs"] and "*" not in rule["resources"] and "*" not in rule["apiGroups"]
        assert "secrets" not in rule["resources"]
        if "update" in rule["verbs"]:
            assert all(r.endswith("/finalizers") for r in rule["resources"])
