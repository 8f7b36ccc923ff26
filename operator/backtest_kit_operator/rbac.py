"""The operator's RBAC rules, as data: the one statement of what it may do in the cluster.

Two files grant these rights: the plain manifest shipped in this package (``rbac.yaml``, for a
deployment without Helm) and the chart's Roles/ClusterRoles (``files/rbac-rules.yaml``, read by
``templates/rbac.yaml``). Both are generated from the rules below by
``python -m backtest_kit_operator.generate`` and checked for drift by the tests, so they cannot
disagree. Each rule says which call needs it; nothing here is broader than what the operator (or
kopf on its behalf) calls. Not needed: customresourcedefinitions and namespaces (kopf scanning is
disabled, so namespaces are named or the operator is cluster-wide), secrets beyond get/create
(the per-trader control token), pods/exec, pods/log, and ``update`` except on ``*/finalizers``.
The strategy ConfigMap is mounted by the kubelet, not read by the operator.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

GROUP: Final = "backtestkit.dev"
PEERING_GROUP: Final = "kopf.dev"


@dataclass(frozen=True, slots=True)
class Rule:
    """One PolicyRule and the reason it exists."""

    api_group: str
    resources: tuple[str, ...]
    verbs: tuple[str, ...]
    why: str

    def to_policy_rule(self) -> dict[str, Any]:
        """The rule as a Kubernetes ``PolicyRule`` object."""
        return {"apiGroups": [self.api_group], "resources": list(self.resources), "verbs": list(self.verbs)}


#: Rights in every namespace the operator serves (a Role there, or a ClusterRole cluster-wide).
NAMESPACED_RULES: Final[tuple[Rule, ...]] = (
    Rule(
        GROUP,
        ("livetraders",),
        ("list", "watch", "patch"),
        "kopf lists/watches them and patches metadata (finalizer backtestkit.dev/drain, progress "
        "annotations backtestkit.dev/*)",
    ),
    Rule(
        GROUP,
        ("walkers",),
        ("get", "list", "watch", "patch"),
        "as livetraders, and the operator reads a Walker when one of its pods or its Job changes",
    ),
    Rule(
        GROUP,
        ("livetraders/status", "walkers/status"),
        ("patch",),
        "the operator merge-patches status (runner /status, Walker ranking)",
    ),
    Rule(
        GROUP,
        ("livetraders/finalizers", "walkers/finalizers"),
        ("update",),
        "owned objects carry ownerReferences with blockOwnerDeletion: true, which the "
        "OwnerReferencesPermissionEnforcement admission plugin allows only to who may update the "
        "owner's finalizers",
    ),
    Rule(
        "",
        ("pods",),
        ("get", "list", "watch", "create", "delete"),
        "runner and state-inspection pods: get (observe), create, delete (replace a failed pod, "
        "finish a drain); list/watch for the walker-task pod events",
    ),
    Rule(
        "",
        ("persistentvolumeclaims",),
        ("get", "create", "patch", "delete"),
        "the runner state volume: get, create, delete (reclaimPolicy Delete), patch (drop its owner "
        "reference when it holds an abandoned position, so it is never garbage-collected)",
    ),
    Rule(
        "",
        ("secrets",),
        ("get", "create"),
        "the per-trader control token <trader>-control: create it, read it to authenticate to the runner",
    ),
    Rule(
        "batch",
        ("jobs",),
        ("get", "list", "watch", "create"),
        "the Walker's Indexed Job: create, get; list/watch for its events",
    ),
    Rule(
        "",
        ("configmaps",),
        ("get", "create", "patch"),
        "the Walker report <walker>-report: get, create, patch",
    ),
    Rule("", ("events",), ("create",), "kopf posts Kubernetes events for handler warnings and errors"),
)

#: With ``--peering NAME`` in named namespaces: kopf's KopfPeering object in each of them.
PEERING_RULES: Final[tuple[Rule, ...]] = (
    Rule(
        PEERING_GROUP,
        ("kopfpeerings",),
        ("get", "list", "watch", "patch"),
        "kopf watches the KopfPeering object and patches its own heartbeat into it",
    ),
)

#: With ``--peering NAME`` cluster-wide (``--all-namespaces``): kopf's ClusterKopfPeering object.
CLUSTER_PEERING_RULES: Final[tuple[Rule, ...]] = (
    Rule(
        PEERING_GROUP,
        ("clusterkopfpeerings",),
        ("get", "list", "watch", "patch"),
        "kopf watches the ClusterKopfPeering object and patches its own heartbeat into it",
    ),
)


def policy_rules(rules: Sequence[Rule]) -> list[dict[str, Any]]:
    """``rules`` as Kubernetes ``PolicyRule`` objects."""
    return [rule.to_policy_rule() for rule in rules]
