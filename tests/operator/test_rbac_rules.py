"""The RBAC rules grant exactly what the operator and kopf call, and the shipped manifest is them."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from backtest_kit_operator import cluster, rbac

Grants = dict[tuple[str, str], set[str]]

# Kubernetes client method prefix -> RBAC verb.
CLIENT_VERBS = {
    "read": "get",
    "get": "get",
    "list": "list",
    "create": "create",
    "delete": "delete",
    "patch": "patch",
}
# Client resource suffix -> (apiGroup, resource).
CLIENT_RESOURCES = {
    "pod": ("", "pods"),
    "persistent_volume_claim": ("", "persistentvolumeclaims"),
    "config_map": ("", "configmaps"),
    "job": ("batch", "jobs"),
    "secret": ("", "secrets"),
}
KINDS = ("livetraders", "walkers")


def grants(rules: list[dict[str, Any]]) -> Grants:
    out: Grants = {}
    for rule in rules:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                out.setdefault((group, resource), set()).update(rule["verbs"])
    return out


def calls_of_the_cluster_client() -> Grants:
    """(group, resource) -> verbs of every built-in resource call in ``cluster.py``."""
    source = Path(cluster.__file__).read_text(encoding="utf-8")
    out: Grants = {}
    for prefix, suffix in re.findall(r"self\._(?:core|batch)\.(\w+?)_namespaced_(\w+)\b", source):
        out.setdefault(CLIENT_RESOURCES[suffix], set()).add(CLIENT_VERBS[prefix])
    return out


def needs() -> Grants:
    """What the operator calls, plus what kopf calls on its behalf."""
    out = calls_of_the_cluster_client()
    out[("", "pods")] |= {"watch"}  # kopf.on.event for walker-task pods: list + watch
    out[("batch", "jobs")] |= {"list", "watch"}  # kopf.on.event for the Walker's Job
    for kind in KINDS:
        out[("backtestkit.dev", kind)] = {"list", "watch", "patch"}  # kopf watches and patches metadata
        out[("backtestkit.dev", f"{kind}/status")] = {"patch"}  # status patches (ours and kopf's)
        out[("backtestkit.dev", f"{kind}/finalizers")] = {"update"}  # blockOwnerDeletion on owned objects
    out[("backtestkit.dev", "walkers")].add("get")  # Cluster.get_custom: a Walker re-read on pod/Job events
    out[("", "events")] = {"create"}  # kopf posts events
    return out


def shipped_roles() -> list[dict[str, Any]]:
    text = resources.files("backtest_kit_operator").joinpath("rbac.yaml").read_text()
    return [doc for doc in yaml.safe_load_all(text) if doc]


def test_the_cluster_client_calls_are_read_from_the_source_not_assumed() -> None:
    calls = calls_of_the_cluster_client()
    assert calls[("", "pods")] == {"get", "list", "create", "delete"}
    assert calls[("", "configmaps")] == {"get", "create", "patch"}


def test_the_namespaced_rules_grant_exactly_what_the_operator_and_kopf_call() -> None:
    assert grants(rbac.policy_rules(rbac.NAMESPACED_RULES)) == needs()


def test_peering_rules_grant_kopf_its_peering_objects_and_nothing_else() -> None:
    verbs = {"get", "list", "watch", "patch"}
    assert grants(rbac.policy_rules(rbac.PEERING_RULES)) == {("kopf.dev", "kopfpeerings"): verbs}
    assert grants(rbac.policy_rules(rbac.CLUSTER_PEERING_RULES)) == {
        ("kopf.dev", "clusterkopfpeerings"): verbs
    }


def test_no_rule_has_a_wildcard_broad_secrets_or_an_update_verb_beyond_owner_finalizers() -> None:
    for rule in rbac.policy_rules((*rbac.NAMESPACED_RULES, *rbac.PEERING_RULES, *rbac.CLUSTER_PEERING_RULES)):
        assert "*" not in rule["verbs"] and "*" not in rule["resources"] and "*" not in rule["apiGroups"]
        if "secrets" in rule["resources"]:
            # the control tokens only: no list/watch of every Secret, no update/delete
            assert rule["resources"] == ["secrets"] and set(rule["verbs"]) == {"get", "create"}
        if "update" in rule["verbs"]:
            assert all(r.endswith("/finalizers") for r in rule["resources"])


def test_the_shipped_manifest_is_a_cluster_role_of_the_rules_and_one_of_the_peering_rules() -> None:
    operator_role, peering_role = shipped_roles()
    assert operator_role["kind"] == peering_role["kind"] == "ClusterRole"
    assert operator_role["rules"] == rbac.policy_rules(rbac.NAMESPACED_RULES)
    assert peering_role["rules"] == rbac.policy_rules((*rbac.PEERING_RULES, *rbac.CLUSTER_PEERING_RULES))
