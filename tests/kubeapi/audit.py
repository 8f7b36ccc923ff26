"""Which RBAC permission each served request needed, from the test server's request log.

The operator's RBAC rules must grant exactly what it calls. Reading the calls from the source
misses what kopf does on its behalf; this module reads them from the wire instead: every request
the test API server served (``GET /_test/requests``) is mapped to the ``(apiGroup, resource, verb)``
the Kubernetes authorizer would check, the way kube-apiserver's request-info resolver does.
Discovery and other non-resource URLs are left out (every authenticated user may read them).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

Permission = tuple[str, str, str]
"""(apiGroup, resource or resource/subresource, verb)."""

_METHOD_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


def permission(method: str, path: str, query: Mapping[str, str]) -> Permission | None:
    """The permission a request needs, or None for a non-resource request (discovery, /version)."""
    parts = [p for p in path.split("/") if p]
    if parts[:1] == ["api"] and len(parts) >= 3:
        group, rest = "", parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 4:
        group, rest = parts[1], parts[3:]
    else:
        return None
    watch = False
    if rest[0] == "watch":
        watch, rest = True, rest[1:]
    if len(rest) >= 3 and rest[0] == "namespaces":
        rest = rest[2:]  # a namespaced resource
    elif rest[0] == "namespaces" and len(rest) <= 2:
        pass  # the namespaces resource itself
    resource, name, sub = rest[0], rest[1] if len(rest) > 1 else "", rest[2] if len(rest) > 2 else ""
    if method == "GET":
        if watch or query.get("watch") in ("true", "1", "True"):
            verb = "watch"
        else:
            verb = "get" if name else "list"
    else:
        verb = _METHOD_VERBS.get(method, method.lower())
        if method == "DELETE" and not name:
            verb = "deletecollection"
    return group, f"{resource}/{sub}" if sub else resource, verb


def permissions(requests: Iterable[Mapping[str, Any]]) -> set[Permission]:
    out: set[Permission] = set()
    for request in requests:
        needed = permission(str(request["method"]), str(request["path"]), request.get("query") or {})
        if needed is not None:
            out.add(needed)
    return out


def granted(rules: Iterable[Mapping[str, Any]]) -> set[Permission]:
    """Every (group, resource, verb) a list of PolicyRules grants (no wildcards expected)."""
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
