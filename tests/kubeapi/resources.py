"""The resource types the fake server knows: built-in kinds and those declared by CustomResourceDefinitions.

Discovery documents, URL routing, status-subresource handling and schema validation are all driven
by :class:`ResourceType`, so a CRD posted at runtime behaves exactly like one loaded at start-up.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ALL_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


@dataclass
class ResourceType:
    group: str
    version: str
    plural: str
    singular: str
    kind: str
    namespaced: bool
    short_names: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    status_subresource: bool = False
    extra_subresources: list[str] = field(default_factory=list)
    schema: dict[str, Any] | None = None
    custom: bool = False
    # field selectors accepted besides metadata.name / metadata.namespace
    field_labels: list[str] = field(default_factory=list)
    # fields outside metadata/status that are not "spec" (never bump generation)
    unconditional_update: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def key(self) -> tuple[str, str]:
        """Storage key: objects are shared by every served version of a group/plural."""
        return (self.group, self.plural)

    def discovery(self) -> list[dict[str, Any]]:
        main: dict[str, Any] = {
            "name": self.plural,
            "singularName": self.singular,
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": list(ALL_VERBS),
        }
        if self.short_names:
            main["shortNames"] = list(self.short_names)
        if self.categories:
            main["categories"] = list(self.categories)
        out = [main]
        subs = (["status"] if self.status_subresource else []) + self.extra_subresources
        for sub in subs:
            verbs = ["get", "patch", "update"]
            kind = self.kind
            if sub == "log":
                verbs, kind = ["get"], "Pod"
            elif sub == "binding":
                verbs, kind = ["create"], "Binding"
            out.append(
                {
                    "name": f"{self.plural}/{sub}",
                    "singularName": "",
                    "namespaced": self.namespaced,
                    "kind": kind,
                    "verbs": verbs,
                }
            )
        return out


def _builtin(
    group: str,
    version: str,
    plural: str,
    kind: str,
    namespaced: bool = True,
    short: list[str] | None = None,
    status: bool = False,
    extra: list[str] | None = None,
    fields: list[str] | None = None,
) -> ResourceType:
    return ResourceType(
        group=group,
        version=version,
        plural=plural,
        singular=kind.lower(),
        kind=kind,
        namespaced=namespaced,
        short_names=short or [],
        status_subresource=status,
        extra_subresources=extra or [],
        field_labels=fields or [],
    )


def builtin_resources() -> list[ResourceType]:
    return [
        _builtin("", "v1", "namespaces", "Namespace", False, ["ns"], status=True, fields=["status.phase"]),
        _builtin("", "v1", "nodes", "Node", False, ["no"], status=True, fields=["spec.unschedulable"]),
        _builtin(
            "",
            "v1",
            "pods",
            "Pod",
            short=["po"],
            status=True,
            extra=["log", "binding"],
            fields=[
                "status.phase",
                "spec.nodeName",
                "spec.restartPolicy",
                "spec.schedulerName",
                "spec.serviceAccountName",
                "status.podIP",
            ],
        ),
        _builtin("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", short=["pvc"], status=True),
        _builtin("", "v1", "configmaps", "ConfigMap", short=["cm"]),
        _builtin("", "v1", "secrets", "Secret", fields=["type"]),
        _builtin("", "v1", "services", "Service", short=["svc"], status=True),
        _builtin("", "v1", "serviceaccounts", "ServiceAccount", short=["sa"]),
        _builtin(
            "",
            "v1",
            "events",
            "Event",
            short=["ev"],
            fields=[
                "involvedObject.kind",
                "involvedObject.name",
                "involvedObject.namespace",
                "involvedObject.uid",
                "reason",
                "type",
                "source",
            ],
        ),
        _builtin(
            "events.k8s.io",
            "v1",
            "events",
            "Event",
            short=["ev"],
            fields=["regarding.name", "reason", "type"],
        ),
        _builtin("batch", "v1", "jobs", "Job", status=True, fields=["status.successful"]),
        _builtin("coordination.k8s.io", "v1", "leases", "Lease"),
        _builtin(
            "apiextensions.k8s.io",
            "v1",
            "customresourcedefinitions",
            "CustomResourceDefinition",
            False,
            ["crd", "crds"],
            status=True,
        ),
    ]


def resources_from_crd(crd: dict[str, Any]) -> list[ResourceType]:
    """One :class:`ResourceType` per served version of an ``apiextensions.k8s.io/v1`` CRD."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    out = []
    for ver in spec.get("versions") or []:
        if not ver.get("served", True):
            continue
        subs = ver.get("subresources") or {}
        schema = (ver.get("schema") or {}).get("openAPIV3Schema")
        out.append(
            ResourceType(
                group=spec["group"],
                version=ver["name"],
                plural=names["plural"],
                singular=names.get("singular") or names["kind"].lower(),
                kind=names["kind"],
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                short_names=list(names.get("shortNames") or []),
                categories=list(names.get("categories") or []),
                status_subresource="status" in subs,
                extra_subresources=["scale"] if "scale" in subs else [],
                schema=schema,
                custom=True,
                unconditional_update=False,
            )
        )
    return out


def crd_status(crd: dict[str, Any]) -> dict[str, Any]:
    """The status a real server reports once a CRD is established."""
    spec = crd.get("spec") or {}
    names = dict(spec.get("names") or {})
    names.setdefault("singular", str(names.get("kind", "")).lower())
    names.setdefault("listKind", f"{names.get('kind', '')}List")
    return {
        "acceptedNames": names,
        "conditions": [
            {
                "type": "NamesAccepted",
                "status": "True",
                "reason": "NoConflicts",
                "message": "no conflicts found",
            },
            {
                "type": "Established",
                "status": "True",
                "reason": "InitialNamesAccepted",
                "message": "the initial names have been accepted",
            },
        ],
        "storedVersions": [v["name"] for v in spec.get("versions") or [] if v.get("storage")],
    }
