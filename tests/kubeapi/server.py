"""The fake Kubernetes API server: REST semantics of kube-apiserver over real HTTP, in memory.

Why a fake and not envtest/kind: the machine has no cluster and no container runtime, yet the
operator must be exercised through kopf and the official client exactly as in production.  What is
implemented is what those clients observe: discovery, CRUD with optimistic concurrency, the four
patch types, status subresources, finalizers and graceful deletion, ownerReference garbage
collection, list/watch with resourceVersion semantics (history, bookmarks, 410), and CRD structural
schemas (pruning, defaulting, validation, simple CEL).  Optionally (``orphan_pod_gc_after``) the
pod garbage collector of kube-controller-manager: pods bound to a Node that does not exist are
failed and force-deleted, which is why node components must register their Node.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import logging
import random
import re
import socket
import threading
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import Future
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from . import builtin_validation
from . import schema as schemas
from .errors import (
    ApiError,
    Cause,
    already_exists,
    bad_request,
    conflict,
    expired,
    invalid,
    not_found,
    status_body,
)
from .patching import json_patch, merge_patch, strategic_merge_patch
from .qos import qos_class
from .resources import ResourceType, builtin_resources, crd_status, resources_from_crd
from .selection import parse_field_selector, parse_label_selector
from .store import Key, Store, Watcher, WatchEvent

log = logging.getLogger(__name__)

CRD_KEY: Key = ("apiextensions.k8s.io", "customresourcedefinitions")
NS_KEY: Key = ("", "namespaces")
POD_KEY: Key = ("", "pods")
NODE_KEY: Key = ("", "nodes")
CRD_CLEANUP = "customresourcecleanup.apiextensions.k8s.io"
PVC_KEY: Key = ("", "persistentvolumeclaims")
PVC_PROTECTION = "kubernetes.io/pvc-protection"
FOREGROUND = "foregroundDeletion"
ORPHAN = "orphan"
LOG_PATH_ANNOTATION = "backtestkit.dev/local-log-path"
NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"  # the alphabet of generateName suffixes
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_NON_SPEC = ("metadata", "status", "apiVersion", "kind")


def now_iso(offset: float = 0.0) -> str:
    return (datetime.now(UTC) + timedelta(seconds=offset)).strftime("%Y-%m-%dT%H:%M:%SZ")


def random_suffix(n: int = 5) -> str:
    return "".join(random.choice(NAME_CHARS) for _ in range(n))


def _spec_part(obj: dict[str, Any], include_status: bool) -> dict[str, Any]:
    skip = ("metadata", "apiVersion", "kind") if include_status else _NON_SPEC
    return {k: v for k, v in obj.items() if k not in skip}


def _same_ignoring_rv(a: dict[str, Any], b: dict[str, Any]) -> bool:
    a2, b2 = copy.deepcopy(a), copy.deepcopy(b)
    for o in (a2, b2):
        o.get("metadata", {}).pop("resourceVersion", None)
        o.pop("apiVersion", None)
    return a2 == b2


_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")


def _label_causes(key: str, value: Any) -> list[Cause]:
    """metadata.labels rules: qualified-name keys (optional DNS prefix) and <=63-char values."""
    causes = []
    prefix, _, name = key.rpartition("/")
    if (
        (prefix and (len(prefix) > 253 or not _SUBDOMAIN.match(prefix)))
        or len(name) > 63
        or not _QUALIFIED_NAME.match(name)
    ):
        causes.append(
            Cause(
                "metadata.labels",
                "FieldValueInvalid",
                f"Invalid value: \"{key}\": name part must consist of alphanumeric characters, '-', "
                "'_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or "
                "'my.name',  or '123-abc', regex used for validation is "
                "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')",
            )
        )
    if isinstance(value, str) and (len(value) > 63 or not _LABEL_VALUE.match(value)):
        message = (
            f'Invalid value: "{value}": must be no more than 63 characters'
            if len(value) > 63
            else f'Invalid value: "{value}": a valid label must be an empty string or consist of '
            "alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric "
            "character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is "
            "'(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
        )
        causes.append(Cause("metadata.labels", "FieldValueInvalid", message))
    return causes


_POD_MUTABLE = (
    "`spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,"
    "`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` "
    "(allow it to be set to 1 if it was previously negative)"
)


# Complexity kept: one check per immutable field of the kinds served.
def immutability_causes(key: Key, old: dict[str, Any], new: dict[str, Any]) -> list[Cause]:  # noqa: C901
    """The update restrictions of built-in kinds that an operator can trip over."""
    ospec, nspec = old.get("spec") or {}, new.get("spec") or {}
    if key == POD_KEY:
        a, b = copy.deepcopy(ospec), copy.deepcopy(nspec)
        for spec in (a, b):
            for field in ("activeDeadlineSeconds", "tolerations", "terminationGracePeriodSeconds"):
                spec.pop(field, None)
            for group in ("containers", "initContainers"):
                for c in spec.get(group) or []:
                    c.pop("image", None)
        if a != b:
            return [
                Cause(
                    "spec",
                    "FieldValueForbidden",
                    f"Forbidden: pod updates may not change fields other than {_POD_MUTABLE}",
                )
            ]
    elif key == ("batch", "jobs"):
        out = []
        for field in ("template", "selector", "completionMode"):
            if ospec.get(field) != nspec.get(field):
                out.append(
                    Cause(
                        f"spec.{field}",
                        "FieldValueInvalid",
                        f"Invalid value: {schemas.show(nspec.get(field))}: field is immutable",
                    )
                )
        return out
    elif key == PVC_KEY:
        a, b = dict(ospec), dict(nspec)
        a.pop("resources", None)
        b.pop("resources", None)
        if a != b:
            return [
                Cause(
                    "spec",
                    "FieldValueForbidden",
                    "Forbidden: spec is immutable after creation except "
                    "resources.requests and volumeAttributesClassName for bound claims",
                )
            ]
    elif key in (("", "configmaps"), ("", "secrets")) and old.get("immutable"):
        out = []
        for field in ("data", "binaryData"):
            if old.get(field) != new.get(field):
                out.append(
                    Cause(
                        field, "FieldValueForbidden", "Forbidden: field is immutable when `immutable` is set"
                    )
                )
        if not new.get("immutable"):
            out.append(
                Cause(
                    "immutable",
                    "FieldValueForbidden",
                    "Forbidden: field is immutable when `immutable` is set",
                )
            )
        return out
    return []


def status_immutability_causes(key: Key, old: dict[str, Any], new: dict[str, Any]) -> list[Cause]:
    """Status fields the real server never lets change: a pod's ``status.qosClass``."""
    if key != POD_KEY:
        return []
    before = (old.get("status") or {}).get("qosClass")
    after = (new.get("status") or {}).get("qosClass")
    if before and after != before:
        return [
            Cause(
                "status.qosClass",
                "FieldValueInvalid",
                f"Invalid value: {json.dumps(after)}: field is immutable",
            )
        ]
    return []


#: kube-apiserver refuses request bodies above 3 MiB (413) and etcd objects above 1.5 MiB (its
#: ``--max-request-bytes``): the API server then answers 500 "etcdserver: request is too large".
MAX_BODY_BYTES = 3 * 1024 * 1024
MAX_OBJECT_BYTES = 1536 * 1024


def check_object_size(obj: dict[str, Any]) -> None:
    if len(json.dumps(obj, separators=(",", ":"))) > MAX_OBJECT_BYTES:
        raise ApiError(500, "etcdserver: request is too large", "InternalError")


#: The test server's own endpoint listing the requests it served (not part of the Kubernetes API).
REQUEST_LOG_PATH = "/_test/requests"


class ApiServer:
    """The request handling; one instance per aiohttp application, used on a single event loop."""

    def __init__(
        self,
        crd_dirs: Sequence[Path] = (),
        *,
        history_size: int = 1000,
        bookmark_period: float = 2.0,
        gc_period: float = 0.1,
        orphan_pod_gc_after: float | None = None,
    ) -> None:
        self.store = Store(history_size)
        self.bookmark_period = bookmark_period
        self.gc_period = gc_period
        # seconds a pod may stay bound to a missing Node (kube-controller-manager: 40 s); None: off
        self.orphan_pod_gc_after = orphan_pod_gc_after
        self._orphans_seen: dict[str, float] = {}
        self.types: dict[tuple[str, str, str], ResourceType] = {}
        self.group_versions: dict[str, list[str]] = {}
        self._gc_task: asyncio.Task[None] | None = None
        self.watch_tasks: set[asyncio.Task[Any]] = set()
        self.requests: list[dict[str, Any]] = []
        """Every request served (method, path, query, User-Agent), for audits of who called what."""
        for rt in builtin_resources():
            self._register(rt)
        for name in ("default", "kube-system", "kube-public", "kube-node-lease"):
            self._create_raw(self._type("", "v1", "namespaces"), {"metadata": {"name": name}}, "")
        for directory in crd_dirs:
            self.load_crd_dir(Path(directory))

    # ----------------------------------------------------------------- registry

    def _register(self, rt: ResourceType) -> None:
        self.types[(rt.group, rt.version, rt.plural)] = rt
        versions = self.group_versions.setdefault(rt.group, [])
        if rt.version not in versions:
            versions.append(rt.version)

    def _unregister_crd(self, crd: dict[str, Any]) -> None:
        spec = crd.get("spec") or {}
        group, plural = spec.get("group"), (spec.get("names") or {}).get("plural")
        for k in [k for k in self.types if k[0] == group and k[2] == plural]:
            del self.types[k]
        remaining = {k[1] for k in self.types if k[0] == group}
        if group in self.group_versions:
            self.group_versions[group] = [v for v in self.group_versions[group] if v in remaining]
            if not self.group_versions[group]:
                del self.group_versions[group]

    def _type(self, group: str, version: str, plural: str) -> ResourceType:
        rt = self.types.get((group, version, plural))
        if rt is None:
            raise ApiError(404, "the server could not find the requested resource", "NotFound")
        return rt

    def _types_for_key(self, key: Key) -> list[ResourceType]:
        return [rt for rt in self.types.values() if rt.key == key]

    def load_crd_dir(self, directory: Path) -> int:
        """Create every CRD found in the YAML files of ``directory`` (missing/empty is fine)."""
        count = 0
        if not directory.is_dir():
            return 0
        for path in sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")]):
            for doc in yaml.safe_load_all(path.read_text()):
                if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
                    self._create_raw(self._type(CRD_KEY[0], "v1", CRD_KEY[1]), doc, "")
                    count += 1
        return count

    # ------------------------------------------------------------ presentation

    def _present(self, rt: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
        out = copy.deepcopy(obj)
        out["apiVersion"] = rt.api_version
        out["kind"] = rt.kind
        # Reorder like the real server: apiVersion, kind, metadata, ...
        return {"apiVersion": out.pop("apiVersion"), "kind": out.pop("kind"), **out}

    # ------------------------------------------------------------------ create

    def _validate_name(self, rt: ResourceType, name: str) -> list[Cause]:
        if rt.key in (NS_KEY, ("", "services")):
            if len(name) > 63 or not _LABEL.match(name):
                return [
                    Cause(
                        "metadata.name",
                        "FieldValueInvalid",
                        f'Invalid value: "{name}": a lowercase RFC 1123 label must consist of lower case '
                        "alphanumeric characters or '-', and must start and end with an alphanumeric "
                        "character (e.g. 'my-name',  or '123-abc', regex used for validation is "
                        "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
                    )
                ]
            return []
        if len(name) > 253 or not _SUBDOMAIN.match(name):
            return [
                Cause(
                    "metadata.name",
                    "FieldValueInvalid",
                    f'Invalid value: "{name}": a lowercase RFC 1123 subdomain must consist of lower case '
                    "alphanumeric characters, '-' or '.', and must start and end with an alphanumeric "
                    "character (e.g. 'example.com', regex used for validation is "
                    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
                )
            ]
        return []

    def _validate_meta(self, meta: dict[str, Any]) -> list[Cause]:
        causes: list[Cause] = []
        controllers = 0
        for i, ref in enumerate(meta.get("ownerReferences") or []):
            for f in ("apiVersion", "kind", "name", "uid"):
                if not ref.get(f):
                    causes.append(
                        Cause(
                            f"metadata.ownerReferences[{i}].{f}",
                            "FieldValueRequired",
                            "Required value" if f != "uid" else 'Invalid value: "": uid must not be empty',
                        )
                    )
            controllers += bool(ref.get("controller"))
        if controllers > 1:
            causes.append(
                Cause(
                    "metadata.ownerReferences",
                    "FieldValueInvalid",
                    'Invalid value: "array": Only one reference can have Controller set to true',
                )
            )
        for key, value in (meta.get("labels") or {}).items() if isinstance(meta.get("labels"), dict) else []:
            causes += _label_causes(str(key), value)
        for what in ("labels", "annotations"):
            value = meta.get(what)
            if value is not None and (
                not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values())
            ):
                causes.append(
                    Cause(
                        f"metadata.{what}",
                        "FieldValueInvalid",
                        f'Invalid value: "object": metadata.{what} values must be strings',
                    )
                )
        return causes

    # Complexity kept: per-kind defaulting and validation of built-in objects, as the API server does.
    def _prepare_builtin(  # noqa: C901
        self, rt: ResourceType, obj: dict[str, Any], old: dict[str, Any] | None
    ) -> list[Cause]:
        """Defaults and the bits of validation of built-in kinds that clients of this project can hit."""
        causes: list[Cause] = []
        spec = obj.get("spec")
        if rt.key == POD_KEY:
            spec = obj.setdefault("spec", {})
            containers = spec.get("containers")
            if not containers:
                causes.append(Cause("spec.containers", "FieldValueRequired", "Required value"))
            causes += builtin_validation.validate_pod_spec(spec)
            for i, c in enumerate(containers or []):
                if not c.get("name"):
                    causes.append(Cause(f"spec.containers[{i}].name", "FieldValueRequired", "Required value"))
                if not c.get("image"):
                    causes.append(
                        Cause(f"spec.containers[{i}].image", "FieldValueRequired", "Required value")
                    )
                c.setdefault("terminationMessagePath", "/dev/termination-log")
                c.setdefault("terminationMessagePolicy", "File")
                image = str(c.get("image", ""))
                c.setdefault(
                    "imagePullPolicy",
                    "Always"
                    if ":" not in image.rsplit("/", 1)[-1] or image.endswith(":latest")
                    else "IfNotPresent",
                )
            spec.setdefault("restartPolicy", "Always")
            spec.setdefault("terminationGracePeriodSeconds", 30)
            spec.setdefault("dnsPolicy", "ClusterFirst")
            spec.setdefault("schedulerName", "default-scheduler")
            spec.setdefault("serviceAccountName", "default")
            if spec["restartPolicy"] not in ("Always", "OnFailure", "Never"):
                causes.append(
                    Cause(
                        "spec.restartPolicy",
                        "FieldValueNotSupported",
                        f'Unsupported value: "{spec["restartPolicy"]}": supported values: '
                        '"Always", "OnFailure", "Never"',
                    )
                )
            if old is None:
                obj["status"] = {"phase": "Pending", "qosClass": qos_class(spec)}
        elif rt.key == ("batch", "jobs"):
            spec = obj.setdefault("spec", {})
            mode = spec.setdefault("completionMode", "NonIndexed")
            if spec.get("completions") is None and spec.get("parallelism") is None:
                spec["completions"] = 1
            spec.setdefault("parallelism", 1)
            spec.setdefault("backoffLimit", 6)
            spec.setdefault("suspend", False)
            if mode == "Indexed" and spec.get("completions") is None:
                causes.append(
                    Cause(
                        "spec.completions",
                        "FieldValueRequired",
                        "Required value: when completion mode is Indexed",
                    )
                )
            tmpl = spec.setdefault("template", {})
            tspec = tmpl.setdefault("spec", {})
            causes += builtin_validation.validate_pod_spec(tspec, "spec.template.spec")
            if tspec.get("restartPolicy") not in ("Never", "OnFailure"):
                causes.append(
                    Cause(
                        "spec.template.spec.restartPolicy",
                        "FieldValueRequired",
                        'Required value: valid values: "OnFailure", "Never"',
                    )
                )
            if old is None:
                uid = obj["metadata"]["uid"]
                name = obj["metadata"]["name"]
                labels = {
                    "batch.kubernetes.io/controller-uid": uid,
                    "batch.kubernetes.io/job-name": name,
                    "controller-uid": uid,
                    "job-name": name,
                }
                spec.setdefault("selector", {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}})
                tmeta = tmpl.setdefault("metadata", {})
                tmeta["labels"] = {**(tmeta.get("labels") or {}), **labels}
                obj["metadata"]["labels"] = {**labels, **(obj["metadata"].get("labels") or {})}
                obj.pop("status", None)
        elif rt.key == ("", "secrets"):
            problem = builtin_validation.secret_data_error(obj)
            if problem:
                raise bad_request(problem)
            causes += builtin_validation.validate_data_keys(obj, secret=True)
            string_data = obj.pop("stringData", None) or {}
            if string_data:
                data = obj.setdefault("data", {})
                for k, v in string_data.items():
                    data[k] = base64.b64encode(str(v).encode()).decode()
            obj.setdefault("type", "Opaque")
        elif rt.key == ("", "services"):
            spec = obj.setdefault("spec", {})
            spec.setdefault("type", "ClusterIP")
            if old is None and spec.get("clusterIP") != "None":
                spec["clusterIP"] = f"10.96.{random.randint(0, 255)}.{random.randint(1, 254)}"
            for p in spec.get("ports") or []:
                p.setdefault("protocol", "TCP")
                p.setdefault("targetPort", p.get("port"))
        elif rt.key == NS_KEY:
            obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
            if old is None:
                obj["status"] = {"phase": "Active"}
            obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = obj["metadata"]["name"]
        elif rt.key == PVC_KEY:
            if old is None:
                obj["status"] = {"phase": "Pending"}
                fins = obj["metadata"].setdefault("finalizers", [])
                if PVC_PROTECTION not in fins:
                    fins.append(PVC_PROTECTION)
            spec = obj.setdefault("spec", {})
            spec.setdefault("volumeMode", "Filesystem")
            causes += builtin_validation.validate_pvc_spec(spec)
        elif rt.key == ("", "configmaps"):
            for field in ("data", "binaryData"):
                if any(not isinstance(v, str) for v in (obj.get(field) or {}).values()):
                    raise bad_request(
                        f'ConfigMap in version "v1" cannot be handled as a ConfigMap: json: cannot '
                        f"unmarshal number into Go struct field ConfigMap.{field} of type string"
                    )
            causes += builtin_validation.validate_data_keys(obj, secret=False)
        elif rt.key == NODE_KEY:
            causes += builtin_validation.validate_node_spec(obj.setdefault("spec", {}))
        elif rt.key == CRD_KEY:
            causes.extend(self._validate_crd(obj))
        return causes

    def _validate_crd(self, obj: dict[str, Any]) -> list[Cause]:
        spec = obj.get("spec") or {}
        names = spec.get("names") or {}
        causes = []
        for f in ("plural", "kind"):
            if not names.get(f):
                causes.append(Cause(f"spec.names.{f}", "FieldValueRequired", "Required value"))
        if not spec.get("group"):
            causes.append(Cause("spec.group", "FieldValueRequired", "Required value"))
        if not spec.get("versions") or sum(bool(v.get("storage")) for v in spec["versions"]) != 1:
            causes.append(
                Cause(
                    "spec.versions",
                    "FieldValueInvalid",
                    'Invalid value: "array": must have exactly one version marked as storage version',
                )
            )
        expected = f"{names.get('plural')}.{spec.get('group')}"
        if not causes and obj["metadata"]["name"] != expected:
            causes.append(
                Cause(
                    "metadata.name",
                    "FieldValueInvalid",
                    f'Invalid value: "{obj["metadata"]["name"]}": must be spec.names.plural+"."+spec.group',
                )
            )
        return causes

    def _custom_checks(
        self, rt: ResourceType, obj: dict[str, Any], old: dict[str, Any] | None
    ) -> list[Cause]:
        if not rt.custom or rt.schema is None:
            return []
        schemas.prune(obj, rt.schema, root=True)
        schemas.apply_defaults(obj, rt.schema)
        causes = schemas.validate(obj, rt.schema)
        if any(c.reason in ("FieldValueNotSupported", "FieldValueTypeInvalid") for c in causes):
            # like apiextensions-apiserver: type errors block CEL evaluation, and it says so
            causes.append(
                Cause(
                    "<nil>",
                    "FieldValueInvalid",
                    'Invalid value: "null": some validation rules were not checked because the object '
                    "was invalid; correct the existing errors to complete validation",
                )
            )
        else:
            causes += schemas.validate_rules(obj, old if old is not None else schemas.MISSING, rt.schema)
        return causes

    # Complexity kept: the create steps in the API server's order (validate, name, default, store).
    def _create_raw(self, rt: ResourceType, body: dict[str, Any], namespace: str) -> dict[str, Any]:  # noqa: C901
        if not isinstance(body, dict):
            raise bad_request("the body of the request was in an unknown format")
        obj = copy.deepcopy(body)
        if obj.get("kind") and obj["kind"] != rt.kind:
            raise bad_request(
                f"the kind in the data ({obj['kind']}) does not match the expected kind ({rt.kind})"
            )
        obj["apiVersion"], obj["kind"] = rt.api_version, rt.kind
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise bad_request("metadata must be an object")
        if rt.namespaced:
            if meta.get("namespace") and meta["namespace"] != namespace:
                raise bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            ns_obj = self.store.get(NS_KEY, "", namespace)
            if ns_obj is None:
                raise not_found("namespaces", "", namespace)
            if ns_obj["metadata"].get("deletionTimestamp"):
                raise ApiError(
                    403,
                    f'{rt.plural} "{meta.get("name") or meta.get("generateName", "")}" is forbidden: '
                    f"unable to create new content in namespace {namespace} because it is being terminated",
                    "Forbidden",
                    meta.get("name", ""),
                    rt.group,
                    rt.plural,
                )
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        if not meta.get("name"):
            if not meta.get("generateName"):
                raise invalid(
                    rt.kind,
                    rt.group,
                    "",
                    [
                        Cause(
                            "metadata.name",
                            "FieldValueRequired",
                            "Required value: name or generateName is required",
                        )
                    ],
                )
            for _ in range(20):
                meta["name"] = meta["generateName"] + random_suffix()
                if self.store.get(rt.key, meta.get("namespace", ""), meta["name"]) is None:
                    break
        name = meta["name"]
        causes = self._validate_name(rt, name) + self._validate_meta(meta)
        if self.store.get(rt.key, meta.get("namespace", ""), name) is not None:
            raise already_exists(rt.plural, rt.group, name)
        for f in (
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "managedFields",
            "selfLink",
        ):
            meta.pop(f, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now_iso()
        meta["generation"] = 1
        if rt.status_subresource and rt.custom:
            obj.pop("status", None)
        causes += self._prepare_builtin(rt, obj, None)
        causes += self._custom_checks(rt, obj, None)
        if causes:
            raise invalid(rt.kind, rt.group, name, causes)
        if rt.key == CRD_KEY:
            obj["status"] = crd_status(obj)
            fins = meta.setdefault("finalizers", [])
            if CRD_CLEANUP not in fins:
                fins.append(CRD_CLEANUP)
            for new_rt in resources_from_crd(obj):
                self._register(new_rt)
        if rt.key == POD_KEY:
            self._check_service_account(obj)
        check_object_size(obj)
        stored = self.store.put(rt.key, obj, None)
        if rt.key == NS_KEY:
            # what the service-account controller does for every new namespace
            sa_type = self._type("", "v1", "serviceaccounts")
            self._create_raw(sa_type, {"metadata": {"name": "default"}}, obj["metadata"]["name"])
        return stored

    def _check_service_account(self, pod: dict[str, Any]) -> None:
        """The ServiceAccount admission plugin: a pod's service account must exist."""
        ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        sa = (pod.get("spec") or {}).get("serviceAccountName") or "default"
        if self.store.get(("", "serviceaccounts"), ns, sa) is None:
            raise ApiError(
                403,
                f'pods "{name}" is forbidden: error looking up service account {ns}/{sa}: '
                f'serviceaccount "{sa}" not found',
                "Forbidden",
                name,
                "",
                "pods",
            )

    # ------------------------------------------------------------------ update

    # Complexity kept: the update steps in the API server's order: preconditions, subresources, finalizers.
    def _update(  # noqa: C901
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        body: dict[str, Any],
        subresource: str,
        *,
        require_rv: bool,
    ) -> dict[str, Any]:
        old = self.store.get(rt.key, namespace, name)
        if old is None:
            raise not_found(rt.plural, rt.group, name)
        if not isinstance(body, dict):
            raise bad_request("the body of the request was in an unknown format")
        incoming = copy.deepcopy(body)
        in_meta = incoming.get("metadata") or {}
        if in_meta.get("name", name) != name:
            raise bad_request(
                f"the name of the object ({in_meta.get('name')}) does not match the name on the URL ({name})"
            )
        if rt.namespaced and in_meta.get("namespace", namespace) != namespace:
            raise bad_request(
                "the namespace of the provided object does not match the namespace sent on the request"
            )
        rv = in_meta.get("resourceVersion")
        if rv:
            if rv != old["metadata"]["resourceVersion"]:
                raise conflict(
                    rt.plural,
                    rt.group,
                    name,
                    "the object has been modified; please apply your changes to the latest version and "
                    "try again",
                )
        elif require_rv and not rt.unconditional_update:
            raise invalid(
                rt.kind,
                rt.group,
                name,
                [
                    Cause(
                        "metadata.resourceVersion",
                        "FieldValueInvalid",
                        "Invalid value: 0x0: must be specified for an update",
                    )
                ],
            )
        if subresource == "status":
            new = copy.deepcopy(old)
            if "status" in incoming:
                new["status"] = incoming["status"]
            else:
                new.pop("status", None)
        else:
            new = incoming
            new["metadata"] = in_meta
            if rt.status_subresource:
                if "status" in old:
                    new["status"] = copy.deepcopy(old["status"])
                else:
                    new.pop("status", None)
            meta = new["metadata"]
            for f in (
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "namespace",
                "name",
                "generation",
            ):
                if f in old["metadata"]:
                    meta[f] = old["metadata"][f]
                else:
                    meta.pop(f, None)
            meta.pop("managedFields", None)
        new["apiVersion"], new["kind"] = old.get("apiVersion", rt.api_version), rt.kind
        meta = new["metadata"]
        meta["resourceVersion"] = old["metadata"]["resourceVersion"]
        causes = self._validate_meta(meta)
        if old["metadata"].get("deletionTimestamp"):
            added = [
                f for f in meta.get("finalizers") or [] if f not in (old["metadata"].get("finalizers") or [])
            ]
            if added:
                causes.append(
                    Cause(
                        "metadata.finalizers",
                        "FieldValueForbidden",
                        "Forbidden: no new finalizers can be added if the object is being deleted, found "
                        f"new finalizers []string{{{', '.join(json.dumps(a) for a in added)}}}",
                    )
                )
        if subresource != "status":
            causes += self._prepare_builtin(rt, new, old)
            causes += immutability_causes(rt.key, old, new)
        else:
            causes += status_immutability_causes(rt.key, old, new)
        causes += self._custom_checks(rt, new, old)
        if causes:
            raise invalid(rt.kind, rt.group, name, causes)
        if _spec_part(new, not rt.status_subresource) != _spec_part(old, not rt.status_subresource):
            meta["generation"] = int(old["metadata"].get("generation") or 0) + 1
        if _same_ignoring_rv(new, old):
            return old
        if rt.key == CRD_KEY:
            self._unregister_crd(old)
            for new_rt in resources_from_crd(new):
                self._register(new_rt)
            new["status"] = {**(new.get("status") or {}), **crd_status(new)}
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            return self._finalize_removal(rt.key, new)
        check_object_size(new)
        return self.store.put(rt.key, new, old)

    def _finalize_removal(self, key: Key, obj: dict[str, Any]) -> dict[str, Any]:
        final = self.store.remove(key, obj)
        if key == CRD_KEY:
            self._unregister_crd(final)
        return final

    # ------------------------------------------------------------------ delete

    # Complexity kept: delete options, preconditions, finalizers, propagation, as Kubernetes has them.
    def _delete(self, rt: ResourceType, namespace: str, name: str, options: dict[str, Any]) -> dict[str, Any]:  # noqa: C901
        obj = self.store.get(rt.key, namespace, name)
        if obj is None:
            raise not_found(rt.plural, rt.group, name)
        meta = obj["metadata"]
        pre = options.get("preconditions") or {}
        if pre.get("uid") and pre["uid"] != meta["uid"]:
            raise conflict(
                rt.plural,
                rt.group,
                name,
                f"Precondition failed: UID in precondition: {pre['uid']}, UID in object meta: {meta['uid']}",
            )
        if pre.get("resourceVersion") and pre["resourceVersion"] != meta["resourceVersion"]:
            raise conflict(
                rt.plural,
                rt.group,
                name,
                f"Precondition failed: ResourceVersion in precondition: {pre['resourceVersion']}, "
                f"ResourceVersion in object meta: {meta['resourceVersion']}",
            )
        policy = options.get("propagationPolicy")
        if policy is None and options.get("orphanDependents") is not None:
            policy = "Orphan" if options["orphanDependents"] else "Background"
        if policy is None:
            policy = "Orphan" if rt.key == ("batch", "jobs") else "Background"
        if policy not in ("Orphan", "Background", "Foreground"):
            raise invalid(
                "DeleteOptions",
                "meta.k8s.io",
                "",
                [
                    Cause(
                        "propagationPolicy",
                        "FieldValueNotSupported",
                        f'Unsupported value: "{policy}": supported values: '
                        '"Foreground", "Background", "Orphan"',
                    )
                ],
            )
        grace = options.get("gracePeriodSeconds")
        if rt.key == POD_KEY:
            spec, status = obj.get("spec") or {}, obj.get("status") or {}
            if grace is None:
                grace = spec.get("terminationGracePeriodSeconds", 30)
            if not spec.get("nodeName") or status.get("phase") in ("Succeeded", "Failed"):
                grace = 0
        else:
            grace = 0
        if policy == "Orphan":
            self._orphan_dependents(meta["uid"])
        new = copy.deepcopy(obj)
        nmeta = new["metadata"]
        fins = list(nmeta.get("finalizers") or [])
        if policy == "Foreground" and not nmeta.get("deletionTimestamp") and FOREGROUND not in fins:
            fins.append(FOREGROUND)
        if rt.key == NS_KEY:
            if name in ("default", "kube-system", "kube-public"):
                raise ApiError(
                    403,
                    f'namespaces "{name}" is forbidden: this namespace may not be deleted',
                    "Forbidden",
                    name,
                    "",
                    "namespaces",
                )
            if not nmeta.get("deletionTimestamp"):
                nmeta["deletionTimestamp"] = now_iso()
                nmeta["deletionGracePeriodSeconds"] = 0
                new["status"] = {"phase": "Terminating"}
                return self.store.put(rt.key, new, obj)
            return obj
        if nmeta.get("deletionTimestamp"):
            if rt.key == POD_KEY and grace == 0 and not fins:
                return self._finalize_removal(rt.key, new)
            return obj
        if fins or grace > 0:
            nmeta["finalizers"] = fins
            nmeta["deletionTimestamp"] = now_iso(grace)
            nmeta["deletionGracePeriodSeconds"] = grace
            if nmeta.get("generation"):
                nmeta["generation"] = int(nmeta["generation"]) + 1
            return self.store.put(rt.key, new, obj)
        return self._finalize_removal(rt.key, new)

    def _orphan_dependents(self, owner_uid: str) -> None:
        for key, obj in list(self.store.all_objects()):
            refs = obj["metadata"].get("ownerReferences") or []
            if any(r.get("uid") == owner_uid for r in refs):
                new = copy.deepcopy(obj)
                new["metadata"]["ownerReferences"] = [r for r in refs if r.get("uid") != owner_uid]
                if not new["metadata"]["ownerReferences"]:
                    del new["metadata"]["ownerReferences"]
                self.store.put(key, new, obj)

    def _remove_finalizer(self, key: Key, obj: dict[str, Any], finalizer: str) -> None:
        new = copy.deepcopy(obj)
        new["metadata"]["finalizers"] = [f for f in new["metadata"].get("finalizers") or [] if f != finalizer]
        if new["metadata"].get("deletionTimestamp") and not new["metadata"]["finalizers"]:
            self._finalize_removal(key, new)
        else:
            self.store.put(key, new, obj)

    def _delete_quietly(self, key: Key, obj: dict[str, Any], policy: str, grace: int | None = None) -> None:
        rts = self._types_for_key(key)
        if not rts:
            return
        meta = obj["metadata"]
        options: dict[str, Any] = {"propagationPolicy": policy, "preconditions": {"uid": meta["uid"]}}
        if grace is not None:
            options["gracePeriodSeconds"] = grace
        try:
            self._delete(rts[0], meta.get("namespace", ""), meta["name"], options)
        except ApiError:
            pass

    # ------------------------------------------------------------ garbage collection

    # Complexity kept: ownerReference cascading: each propagation policy and owner state is one branch.
    def collect_garbage(self) -> None:  # noqa: C901
        """One pass of the garbage collector, namespace controller and CRD instance cleanup."""
        store = self.store
        referenced: set[str] = set()
        for key, obj in list(store.all_objects()):
            meta = obj["metadata"]
            refs = meta.get("ownerReferences") or []
            if not refs:
                continue
            dangling, waiting, alive = [], [], []
            for ref in refs:
                found = store.by_uid_lookup(ref.get("uid", ""))
                owner = found[1] if found else None
                if (
                    owner is not None
                    and meta.get("namespace")
                    and owner["metadata"].get("namespace") not in (None, "", meta.get("namespace"))
                ):
                    owner = None
                if owner is None:
                    dangling.append(ref)
                elif owner["metadata"].get("deletionTimestamp") and FOREGROUND in (
                    owner["metadata"].get("finalizers") or []
                ):
                    waiting.append(ref)
                    referenced.add(ref["uid"])
                else:
                    alive.append(ref)
                    referenced.add(ref["uid"])
            if meta.get("deletionTimestamp"):
                continue
            if not alive:
                self._delete_quietly(key, obj, "Foreground" if waiting else "Background")
            elif dangling:
                new = copy.deepcopy(obj)
                new["metadata"]["ownerReferences"] = alive + waiting
                store.put(key, new, obj)
        for key, obj in list(store.all_objects()):
            meta = obj["metadata"]
            if not meta.get("deletionTimestamp"):
                continue
            if FOREGROUND in (meta.get("finalizers") or []) and meta["uid"] not in referenced:
                self._remove_finalizer(key, obj, FOREGROUND)
            elif key == NS_KEY:
                self._finish_namespace(obj)
            elif key == PVC_KEY and PVC_PROTECTION in (meta.get("finalizers") or []):
                if not self._pvc_in_use(meta["namespace"], meta["name"]):
                    self._remove_finalizer(key, obj, PVC_PROTECTION)
            elif key == CRD_KEY and CRD_CLEANUP in (meta.get("finalizers") or []):
                spec = obj.get("spec") or {}
                ikey = (spec.get("group", ""), (spec.get("names") or {}).get("plural", ""))
                instances = list(store.items(ikey))
                for inst in instances:
                    if not inst["metadata"].get("deletionTimestamp"):
                        self._delete_quietly(ikey, inst, "Background")
                if not list(store.items(ikey)):
                    self._remove_finalizer(key, obj, CRD_CLEANUP)
        if self.orphan_pod_gc_after is not None:
            self._collect_orphaned_pods()

    def _collect_orphaned_pods(self) -> None:
        """kube-controller-manager's PodGC: a pod bound to a missing Node is failed, then force-deleted."""
        now = time.monotonic()
        nodes = {obj["metadata"]["name"] for obj in self.store.items(NODE_KEY)}
        seen: dict[str, float] = {}
        for pod in list(self.store.items(POD_KEY)):
            node = (pod.get("spec") or {}).get("nodeName")
            if not node or node in nodes:
                continue
            meta = pod["metadata"]
            seen[meta["uid"]] = self._orphans_seen.get(meta["uid"], now)
            if now - seen[meta["uid"]] < float(self.orphan_pod_gc_after or 0):
                continue
            log.info("pod GC: deleting %s/%s, node %s is gone", meta["namespace"], meta["name"], node)
            new = copy.deepcopy(pod)
            status = new.setdefault("status", {})
            if status.get("phase") not in ("Succeeded", "Failed"):
                status["phase"] = "Failed"
                conds = [c for c in status.get("conditions") or [] if c.get("type") != "DisruptionTarget"]
                conds.append(
                    {
                        "type": "DisruptionTarget",
                        "status": "True",
                        "reason": "DeletionByPodGC",
                        "message": "PodGC: node no longer exists",
                        "lastTransitionTime": now_iso(),
                    }
                )
                status["conditions"] = conds
                pod = self.store.put(POD_KEY, new, pod)
            self._delete_quietly(POD_KEY, pod, "Background", grace=0)
            seen.pop(meta["uid"], None)
        self._orphans_seen = seen

    def _pvc_in_use(self, namespace: str, claim: str) -> bool:
        """The pvc-protection controller's test: a pod that has not finished mounts the claim."""
        for pod in self.store.items(POD_KEY, namespace):
            if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                continue
            for vol in (pod.get("spec") or {}).get("volumes") or []:
                if (vol.get("persistentVolumeClaim") or {}).get("claimName") == claim:
                    return True
        return False

    def _finish_namespace(self, ns_obj: dict[str, Any]) -> None:
        name = ns_obj["metadata"]["name"]
        remaining = 0
        for key, obj in list(self.store.all_objects()):
            if key == NS_KEY or obj["metadata"].get("namespace") != name:
                continue
            remaining += 1
            if not obj["metadata"].get("deletionTimestamp"):
                self._delete_quietly(key, obj, "Background")
        if remaining == 0 and self.store.get(NS_KEY, "", name) is not None:
            self._finalize_removal(NS_KEY, ns_obj)

    async def _gc_loop(self) -> None:
        while True:
            await asyncio.sleep(self.gc_period)
            try:
                self.collect_garbage()
            except Exception:
                log.exception("garbage collection pass failed")

    # ------------------------------------------------------------------- HTTP

    def make_app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self.handle)

        async def on_startup(_: web.Application) -> None:
            self._gc_task = asyncio.get_running_loop().create_task(self._gc_loop())

        async def on_cleanup(_: web.Application) -> None:
            if self._gc_task:
                self._gc_task.cancel()

        app.on_startup.append(on_startup)
        app.on_cleanup.append(on_cleanup)
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.path == REQUEST_LOG_PATH:
            return self._request_log(request)
        self.requests.append(
            {
                "method": request.method,
                "path": request.path,
                "query": dict(request.query),
                "userAgent": request.headers.get("User-Agent", ""),
            }
        )
        try:
            return await self._route(request)
        except ApiError as exc:
            return web.json_response(exc.status(), status=exc.code)
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        except Exception as exc:
            log.exception("internal error on %s %s", request.method, request.path)
            body = status_body(500, "InternalError", f"Internal error occurred: {exc}")
            return web.json_response(body, status=500)

    def _request_log(self, request: web.Request) -> web.Response:
        """``GET`` the requests served so far (``?userAgent=`` filters by prefix); ``DELETE`` clears."""
        if request.method == "DELETE":
            self.requests.clear()
            return web.json_response({"items": []})
        prefix = request.query.get("userAgent", "")
        items = [r for r in self.requests if r["userAgent"].startswith(prefix)]
        return web.json_response({"items": items})

    async def _body(self, request: web.Request) -> Any:
        raw = await request.read()
        if len(raw) > MAX_BODY_BYTES:
            raise ApiError(
                413, f"Request entity too large: limit is {MAX_BODY_BYTES}", "RequestEntityTooLarge"
            )
        if not raw:
            return None
        ctype = request.content_type
        try:
            if "yaml" in ctype:
                return yaml.safe_load(raw)
            return json.loads(raw)
        except (ValueError, yaml.YAMLError) as exc:
            raise bad_request(f"couldn't get version/kind; json parse error: {exc}") from None

    # Complexity kept: the REST path table: one branch per URL shape of the Kubernetes API.
    async def _route(self, request: web.Request) -> web.StreamResponse:  # noqa: C901
        path = request.path.rstrip("/") or "/"
        parts = [p for p in path.split("/") if p]
        if path in ("/healthz", "/livez", "/readyz"):
            return web.Response(text="ok")
        if path == "/version":
            return web.json_response(
                {
                    "major": "1",
                    "minor": "31",
                    "gitVersion": "v1.31.0-fake",
                    "gitCommit": "0000000",
                    "gitTreeState": "clean",
                    "buildDate": "2024-08-13T00:00:00Z",
                    "goVersion": "go1.22",
                    "compiler": "gc",
                    "platform": "linux/amd64",
                }
            )
        if parts == ["api"]:
            return web.json_response(
                {
                    "kind": "APIVersions",
                    "versions": ["v1"],
                    "serverAddressByClientCIDRs": [
                        {"clientCIDR": "0.0.0.0/0", "serverAddress": request.host}
                    ],
                }
            )
        if parts == ["apis"]:
            return web.json_response(
                {
                    "kind": "APIGroupList",
                    "apiVersion": "v1",
                    "groups": [self._group_doc(g) for g in self.group_versions if g],
                }
            )
        if len(parts) == 2 and parts[0] == "apis":
            if parts[1] not in self.group_versions:
                raise ApiError(404, "the server could not find the requested resource", "NotFound")
            return web.json_response({"apiVersion": "v1", **self._group_doc(parts[1])})
        if parts[:1] == ["api"] and len(parts) >= 2:
            group, version, rest = "", parts[1], parts[2:]
        elif parts[:1] == ["apis"] and len(parts) >= 3:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise ApiError(404, "the server could not find the requested resource", "NotFound")
        if version not in self.group_versions.get(group, []):
            raise ApiError(404, "the server could not find the requested resource", "NotFound")
        if not rest:
            return web.json_response(self._resource_list(group, version))
        watch_path = False
        if rest[0] == "watch":
            watch_path, rest = True, rest[1:]
        namespace: str | None = None
        if (
            len(rest) >= 3
            and rest[0] == "namespaces"
            and not (len(rest) == 3 and rest[2] in ("status", "finalize"))
        ):
            namespace, rest = rest[1], rest[2:]
        plural, name, sub = rest[0], (rest[1] if len(rest) > 1 else ""), (rest[2] if len(rest) > 2 else "")
        if len(rest) > 3:
            raise ApiError(404, "the server could not find the requested resource", "NotFound")
        rt = self._type(group, version, plural)
        if namespace is not None and not rt.namespaced:
            raise ApiError(404, "the server could not find the requested resource", "NotFound")
        if rt.namespaced and namespace is None and name:
            raise ApiError(404, "the server could not find the requested resource", "NotFound")
        ns = namespace or ""
        q = request.query
        method = request.method
        if sub and sub not in (["status"] if rt.status_subresource else []) + rt.extra_subresources:
            raise ApiError(404, "the server could not find the requested resource", "NotFound")
        if not name:
            if method == "GET":
                if watch_path or q.get("watch") in ("true", "1", "True"):
                    return await self._watch(request, rt, namespace)
                return web.json_response(self._list(rt, namespace, q))
            if method == "POST":
                if rt.namespaced and namespace is None:
                    raise ApiError(
                        405,
                        "the server does not allow this method on the requested resource",
                        "MethodNotAllowed",
                    )
                body = await self._body(request)
                if q.get("dryRun"):
                    return web.json_response(
                        self._present(rt, self._dry_run_create(rt, body, ns)), status=201
                    )
                return web.json_response(self._present(rt, self._create_raw(rt, body, ns)), status=201)
            if method == "DELETE":
                return web.json_response(self._delete_collection(rt, namespace, q, await self._body(request)))
            raise ApiError(
                405, "the server does not allow this method on the requested resource", "MethodNotAllowed"
            )
        if sub == "log":
            return self._pod_log(rt, ns, name, q)
        if sub == "binding":
            if method != "POST":
                raise ApiError(
                    405, "the server does not allow this method on the requested resource", "MethodNotAllowed"
                )
            return web.json_response(self._bind(ns, name, await self._body(request) or {}), status=201)
        if method == "GET":
            if watch_path or q.get("watch") in ("true", "1", "True"):
                return await self._watch(request, rt, namespace, name)
            obj = self.store.get(rt.key, ns, name)
            if obj is None:
                raise not_found(rt.plural, rt.group, name)
            return web.json_response(self._present(rt, obj))
        if method == "PUT":
            obj = self._update(rt, ns, name, await self._body(request), sub, require_rv=True)
            return web.json_response(self._present(rt, obj))
        if method == "PATCH":
            obj = self._patch(rt, ns, name, sub, request.content_type, await self._body(request), q)
            return web.json_response(self._present(rt, obj))
        if method == "DELETE" and not sub:
            options = dict(await self._body(request) or {})
            if "gracePeriodSeconds" in q:
                options["gracePeriodSeconds"] = int(q["gracePeriodSeconds"])
            if "propagationPolicy" in q:
                options["propagationPolicy"] = q["propagationPolicy"]
            if "orphanDependents" in q:
                options["orphanDependents"] = q["orphanDependents"] == "true"
            return web.json_response(self._present(rt, self._delete(rt, ns, name, options)))
        raise ApiError(
            405, "the server does not allow this method on the requested resource", "MethodNotAllowed"
        )

    def _dry_run_create(self, rt: ResourceType, body: dict[str, Any], ns: str) -> dict[str, Any]:
        saved = (self.store.rv, list(self.store.history), dict(self.store.by_uid))
        watchers, self.store.watchers = self.store.watchers, set()
        listeners, self.store.listeners = self.store.listeners, []
        try:
            obj = self._create_raw(rt, body, ns)
            self.store.bucket(rt.key).pop((obj["metadata"].get("namespace", ""), obj["metadata"]["name"]))
            return obj
        finally:
            self.store.rv, self.store.watchers, self.store.listeners = saved[0], watchers, listeners
            self.store.history.clear()
            self.store.history.extend(saved[1])
            self.store.by_uid = saved[2]

    def _group_doc(self, group: str) -> dict[str, Any]:
        versions = [{"groupVersion": f"{group}/{v}", "version": v} for v in self.group_versions[group]]
        return {"kind": "APIGroup", "name": group, "versions": versions, "preferredVersion": versions[0]}

    def _resource_list(self, group: str, version: str) -> dict[str, Any]:
        resources: list[dict[str, Any]] = []
        for (g, v, _), rt in sorted(self.types.items()):
            if g == group and v == version:
                resources.extend(rt.discovery())
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": f"{group}/{version}" if group else version,
            "resources": resources,
        }

    # -------------------------------------------------------------- list/watch

    def _matcher(self, rt: ResourceType, namespace: str | None, q: Any) -> Any:
        labels = parse_label_selector(q.get("labelSelector"))
        fields = parse_field_selector(q.get("fieldSelector"), rt.field_labels)

        def matches(obj: dict[str, Any]) -> bool:
            meta = obj.get("metadata") or {}
            if namespace is not None and meta.get("namespace") != namespace:
                return False
            return labels(meta.get("labels") or {}) and fields(obj)

        return matches

    def _check_rv(self, rv: str | None) -> int | None:
        if not rv or rv == "0":
            return None
        try:
            value = int(rv)
        except ValueError:
            raise bad_request(f'invalid resource version "{rv}"') from None
        if value < self.store.compacted:
            raise expired(f"too old resource version: {value} ({self.store.compacted + 1})")
        return value

    def _list(self, rt: ResourceType, namespace: str | None, q: Any) -> dict[str, Any]:
        self._check_rv(q.get("resourceVersion"))
        matches = self._matcher(rt, namespace, q)
        items = [o for o in self.store.items(rt.key, namespace) if matches(o)]
        meta: dict[str, Any] = {"resourceVersion": str(self.store.rv)}
        start = 0
        if q.get("continue"):
            try:
                token = json.loads(base64.urlsafe_b64decode(q["continue"].encode()))
                start = int(token["start"])
                if int(token["rv"]) < self.store.compacted:
                    raise expired(
                        "The provided continue parameter is too old to display a consistent list result. "
                        "You can start a new list without the continue parameter."
                    )
            except (ValueError, KeyError, TypeError):
                raise bad_request("continue key is not valid") from None
        limit = int(q.get("limit") or 0)
        page = items[start:]
        if limit and len(page) > limit:
            page = page[:limit]
            token = {"rv": self.store.rv, "start": start + limit}
            meta["continue"] = base64.urlsafe_b64encode(json.dumps(token).encode()).decode()
            meta["remainingItemCount"] = len(items) - start - limit
        return {
            "kind": f"{rt.kind}List",
            "apiVersion": rt.api_version,
            "metadata": meta,
            "items": [self._present(rt, o) for o in page],
        }

    # Complexity kept: the watch protocol: resourceVersion, bookmarks, timeouts and 410 Gone.
    async def _watch(  # noqa: C901
        self, request: web.Request, rt: ResourceType, namespace: str | None, name: str = ""
    ) -> web.StreamResponse:
        q = dict(request.query)
        if name:
            q["fieldSelector"] = ",".join(filter(None, [q.get("fieldSelector"), f"metadata.name={name}"]))
        matches = self._matcher(rt, namespace, q)
        bookmarks = q.get("allowWatchBookmarks") in ("true", "1", "True")
        timeout = float(q["timeoutSeconds"]) if q.get("timeoutSeconds") else None
        rv_param = q.get("resourceVersion")
        watcher = Watcher(rt.key, namespace, matches)
        self.store.watchers.add(watcher)
        task = asyncio.current_task()
        if task is not None:
            self.watch_tasks.add(task)
        response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        try:
            await response.prepare(request)
            last = 0

            async def send(kind: str, obj: dict[str, Any]) -> None:
                line = json.dumps({"type": kind, "object": obj}, separators=(",", ":")) + "\n"
                await response.write(line.encode())

            try:
                since = self._check_rv(rv_param)
            except ApiError as exc:
                await send("ERROR", exc.status())
                return response
            if since is None or q.get("sendInitialEvents") == "true":
                for obj in list(self.store.items(rt.key, namespace)):
                    if matches(obj):
                        await send("ADDED", self._present(rt, obj))
                last = self.store.rv
                if q.get("sendInitialEvents") == "true" and bookmarks:
                    await send(
                        "BOOKMARK",
                        {
                            "kind": rt.kind,
                            "apiVersion": rt.api_version,
                            "metadata": {
                                "resourceVersion": str(last),
                                "annotations": {"k8s.io/initial-events-end": "true"},
                            },
                        },
                    )
            else:
                last = since
                for event in list(self.store.history):
                    if event.key == rt.key and event.rv > since:
                        out = self._translate(event, matches)
                        if out:
                            await send(out[0], self._present(rt, out[1]))
                        last = event.rv
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout if timeout is not None else None
            next_bookmark = loop.time() + self.bookmark_period
            while True:
                now = loop.time()
                if deadline is not None and now >= deadline:
                    break
                waits = [next_bookmark - now] if bookmarks else [3600.0]
                if deadline is not None:
                    waits.append(deadline - now)
                try:
                    event = await asyncio.wait_for(watcher.queue.get(), timeout=max(0.0, min(waits)))
                except TimeoutError:
                    if bookmarks and loop.time() >= next_bookmark:
                        if watcher.queue.empty():
                            last = max(last, self.store.rv)
                            await send(
                                "BOOKMARK",
                                {
                                    "kind": rt.kind,
                                    "apiVersion": rt.api_version,
                                    "metadata": {"resourceVersion": str(last)},
                                },
                            )
                        next_bookmark = loop.time() + self.bookmark_period
                    continue
                if event.rv <= last:
                    continue
                last = event.rv
                out = self._translate(event, matches)
                if out:
                    await send(out[0], self._present(rt, out[1]))
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.store.watchers.discard(watcher)
            if task is not None:
                self.watch_tasks.discard(task)
        return response

    @staticmethod
    def _translate(event: WatchEvent, matches: Any) -> tuple[str, dict[str, Any]] | None:
        """Map a store event to what a filtered watcher sees (selector transitions become ADDED/DELETED)."""
        if event.type == "MODIFIED":
            was, now = event.old is not None and matches(event.old), matches(event.obj)
            if was and now:
                return ("MODIFIED", event.obj)
            if now:
                return ("ADDED", event.obj)
            if was:
                return ("DELETED", event.obj)
            return None
        return (event.type, event.obj) if matches(event.obj) else None

    # ------------------------------------------------------------------- patch

    # Complexity kept: one branch per patch content type (JSON, merge, strategic merge, apply).
    def _patch(  # noqa: C901
        self, rt: ResourceType, ns: str, name: str, sub: str, ctype: str, body: Any, q: Any
    ) -> dict[str, Any]:
        current = self.store.get(rt.key, ns, name)
        if ctype == "application/apply-patch+yaml":
            if not q.get("fieldManager"):
                raise invalid(
                    "PatchOptions",
                    "meta.k8s.io",
                    "",
                    [
                        Cause(
                            "fieldManager",
                            "FieldValueRequired",
                            "Required value: is required for apply patch",
                        )
                    ],
                )
            if current is None:
                if sub:
                    raise not_found(rt.plural, rt.group, name)
                return self._create_raw(rt, body, ns)
        if current is None:
            raise not_found(rt.plural, rt.group, name)
        base = self._present(rt, current)
        if ctype == "application/merge-patch+json" or ctype == "application/apply-patch+yaml":
            if not isinstance(body, dict):
                raise bad_request(
                    "json: cannot unmarshal array into Go value of type map[string]interface {}"
                )
            patched = merge_patch(base, body)
        elif ctype == "application/json-patch+json":
            patched = json_patch(base, body)
        elif ctype == "application/strategic-merge-patch+json":
            if rt.custom:
                raise ApiError(
                    415,
                    "the body of the request was in an unknown format - accepted media types include: "
                    "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
                    "UnsupportedMediaType",
                )
            if not isinstance(body, dict):
                raise bad_request(
                    "json: cannot unmarshal array into Go value of type map[string]interface {}"
                )
            patched = strategic_merge_patch(base, body)
        else:
            raise ApiError(
                415,
                "the body of the request was in an unknown format - accepted media types include: "
                "application/json-patch+json, application/merge-patch+json, "
                "application/strategic-merge-patch+json, application/apply-patch+yaml",
                "UnsupportedMediaType",
            )
        if not isinstance(patched, dict):
            raise bad_request("patch produced a non-object")
        return self._update(rt, ns, name, patched, sub, require_rv=False)

    # --------------------------------------------------------------- the rest

    def _delete_collection(
        self, rt: ResourceType, namespace: str | None, q: Any, body: Any
    ) -> dict[str, Any]:
        matches = self._matcher(rt, namespace, q)
        out = []
        for obj in list(self.store.items(rt.key, namespace)):
            if matches(obj):
                meta = obj["metadata"]
                out.append(
                    self._present(
                        rt, self._delete(rt, meta.get("namespace", ""), meta["name"], dict(body or {}))
                    )
                )
        return {
            "kind": f"{rt.kind}List",
            "apiVersion": rt.api_version,
            "metadata": {"resourceVersion": str(self.store.rv)},
            "items": out,
        }

    def _bind(self, ns: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        pod = self.store.get(POD_KEY, ns, name)
        if pod is None:
            raise not_found("pods", "", name)
        # Like kube-apiserver, the target Node need not exist (the scheduler checks that, not the API):
        # the binding only records spec.nodeName and the PodScheduled condition.
        target = body.get("target") or {}
        node, kind = target.get("name"), target.get("kind")
        causes = []
        if kind and kind != "Node":
            causes.append(
                Cause(
                    "target.kind",
                    "FieldValueNotSupported",
                    f'Unsupported value: "{kind}": supported values: "Node", "<empty>"',
                )
            )
        if not node:
            causes.append(Cause("target.name", "FieldValueRequired", "Required value"))
        if causes:
            raise invalid("Binding", "", name, causes)
        if (pod.get("spec") or {}).get("nodeName"):
            raise conflict(
                "pods/binding",
                "",
                name,
                f'pod {name} is already assigned to node "{pod["spec"]["nodeName"]}"',
            )
        new = copy.deepcopy(pod)
        new["spec"]["nodeName"] = node
        status = new.setdefault("status", {})
        conds = [c for c in status.get("conditions") or [] if c.get("type") != "PodScheduled"]
        conds.append(
            {"type": "PodScheduled", "status": "True", "lastProbeTime": None, "lastTransitionTime": now_iso()}
        )
        status["conditions"] = conds
        self.store.put(POD_KEY, new, pod)
        return status_body(201, "", "", success=True)

    def _pod_log(self, rt: ResourceType, ns: str, name: str, q: Any) -> web.Response:
        pod = self.store.get(rt.key, ns, name)
        if pod is None:
            raise not_found("pods", "", name)
        path = (pod["metadata"].get("annotations") or {}).get(LOG_PATH_ANNOTATION)
        if not path or not Path(path).is_file():
            container = ((pod.get("spec") or {}).get("containers") or [{}])[0].get("name", "")
            raise bad_request(
                f'container "{container}" in pod "{name}" is waiting to start: ContainerCreating'
            )
        text = Path(path).read_text(errors="replace")
        if q.get("tailLines"):
            lines = text.splitlines(keepends=True)
            text = "".join(lines[-int(q["tailLines"]) :])
        return web.Response(text=text, content_type="text/plain")


class KubeAPIServer:
    """Runs :class:`ApiServer` on 127.0.0.1 in a background thread with its own event loop.

    ``start()``/``stop()`` for synchronous use (pytest fixtures), ``start_async()``/``stop_async()``
    when the caller already runs a loop (``python -m tests.kubeapi``).
    """

    def __init__(
        self,
        crd_dirs: Sequence[Path | str] = (),
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        history_size: int = 1000,
        bookmark_period: float = 2.0,
        gc_period: float = 0.1,
        orphan_pod_gc_after: float | None = None,
    ) -> None:
        self.api = ApiServer(
            [Path(d) for d in crd_dirs],
            history_size=history_size,
            bookmark_period=bookmark_period,
            gc_period=gc_period,
            orphan_pod_gc_after=orphan_pod_gc_after,
        )
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start_async(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        self._runner = web.AppRunner(self.api.make_app(), access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()
        self._loop = asyncio.get_running_loop()

    async def stop_async(self) -> None:
        """Close open watches, then the listener."""
        for task in list(self.api.watch_tasks):
            task.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def start(self) -> KubeAPIServer:
        started: Future[None] = Future()

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.start_async())
            except BaseException as exc:
                started.set_exception(exc)
                return
            started.set_result(None)
            loop.run_forever()
            loop.run_until_complete(self.stop_async())
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()

        self._thread = threading.Thread(target=run, name="fake-kube-apiserver", daemon=True)
        self._thread.start()
        started.result(timeout=10)
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            self._thread = None

    def call(self, fn: Any, *args: Any) -> Any:
        """Run ``fn(*args)`` on the server loop (for test helpers that poke at server state)."""
        if self._loop is None:
            return fn(*args)
        fut: Future[Any] = Future()

        def run() -> None:
            try:
                fut.set_result(fn(*args))
            except BaseException as exc:
                fut.set_exception(exc)

        self._loop.call_soon_threadsafe(run)
        return fut.result(timeout=10)

    def compact(self) -> None:
        """Drop the watch history, as etcd compaction would: older resourceVersions now answer 410."""
        self.call(self.api.store.compact)

    def write_kubeconfig(self, path: Path | str) -> Path:
        from .kubeconfig import write_kubeconfig

        return write_kubeconfig(path, self.url)

    def __enter__(self) -> KubeAPIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_until(predicate: Any, timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns something truthy (tests use it; kept here to share)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout}s")
        time.sleep(interval)
