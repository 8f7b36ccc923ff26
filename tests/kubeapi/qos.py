"""A pod's QoS class, computed from its containers' resources as kube-apiserver does.

The real API server sets ``status.qosClass`` when a pod is created and refuses any status update
that changes it (422, ``field is immutable``); a kubelet that reports another class leaves the pod
stuck. Both the fake server and the local kubelet use this one function so they agree, and so a
pod with resource requests behaves here as it does on a cluster.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

COMPUTE = ("cpu", "memory")


def _zero(value: Any) -> bool:
    return str(value).strip() in ("0", "0m", "0Mi", "0Gi", "0Ki", "")


def qos_class(spec: Mapping[str, Any]) -> str:
    """``Guaranteed``, ``Burstable`` or ``BestEffort`` for a pod spec."""
    containers = [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]
    any_set = False
    guaranteed = True
    for container in containers:
        resources = container.get("resources") or {}
        requests = {
            k: v for k, v in (resources.get("requests") or {}).items() if k in COMPUTE and not _zero(v)
        }
        limits = {k: v for k, v in (resources.get("limits") or {}).items() if k in COMPUTE and not _zero(v)}
        if requests or limits:
            any_set = True
        if set(limits) != set(COMPUTE):
            guaranteed = False
        for name, value in requests.items():  # an unset request defaults to the limit
            if str(limits.get(name)) != str(value):
                guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"
