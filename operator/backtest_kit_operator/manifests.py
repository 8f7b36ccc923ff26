"""Pure builders of the Kubernetes objects the operator owns: runner pod, state PVC, Walker Job,
Walker report ConfigMap.

Every function here takes plain data (the custom object's body, the operator settings) and returns
a manifest dict: no API calls, no clock, no randomness. That keeps the "what should exist" decision
testable in isolation and makes reconciliation idempotent: building twice gives the same object,
and the hash of the pod-relevant spec fields tells whether a running pod is out of date.

Names are deterministic on purpose. The runner pod of LiveTrader ``x`` is always ``x-runner``, so
the API server itself refuses (409 AlreadyExists) a second runner for the same trader while the
first pod object exists, whatever the operator believes after a restart.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from .models import LiveTraderSpec, Runner, StrategyModule, WalkerSpec, parse_trader_spec, parse_walker_spec
from .settings import OperatorSettings

GROUP = "backtestkit.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
FINALIZER = f"{GROUP}/drain"
ABANDON_DRAIN_ANNOTATION = f"{GROUP}/abandon-drain"
CLOSE_POSITION_ANNOTATION = f"{GROUP}/close-position"
"""Any new value asks the runner once to close the open position (``POST /close``)."""
SPEC_HASH_ANNOTATION = f"{GROUP}/spec-hash"
TRADER_LABEL = f"{GROUP}/livetrader"
WALKER_LABEL = f"{GROUP}/walker"
NAME_LABEL = "app.kubernetes.io/name"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "backtest-kit-operator"
RUNNER_APP = "backtest-kit-runner"
INSPECT_APP = "backtest-kit-state-inspect"
INSPECTED_RUNNER_ANNOTATION = f"{GROUP}/inspected-runner"
WALKER_TASK_APP = "backtest-kit-walker-task"
COMPLETION_INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"

STATE_DIR = "/var/lib/backtest-kit"
MODULE_DIR = "/etc/backtest-kit/strategy"
CONTROL_DIR = "/etc/backtest-kit/control"
CONTROL_TOKEN_KEY = "token"
TERMINATION_LOG = "/dev/termination-log"
HTTP_PORT = 8080
REPORT_KEY = "report.json"


def runner_pod_name(trader_name: str) -> str:
    return f"{trader_name}-runner"


def state_pvc_name(trader_name: str) -> str:
    return f"{trader_name}-state"


def control_secret_name(trader_name: str) -> str:
    return f"{trader_name}-control"


def inspection_pod_name(trader_name: str) -> str:
    return f"{trader_name}-inspect"


def walker_job_name(walker_name: str) -> str:
    return f"{walker_name}-job"


def report_configmap_name(walker_name: str) -> str:
    return f"{walker_name}-report"


def owner_reference(owner: Mapping[str, Any], *, kind: str) -> dict[str, Any]:
    """A controller owner reference to the custom object ``owner`` (GC deletes dependents with it)."""
    meta = owner["metadata"]
    return {
        "apiVersion": API_VERSION,
        "kind": kind,
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def trader_labels(trader_name: str) -> dict[str, str]:
    return {NAME_LABEL: RUNNER_APP, TRADER_LABEL: trader_name, MANAGED_BY_LABEL: MANAGED_BY}


def walker_labels(walker_name: str) -> dict[str, str]:
    return {NAME_LABEL: WALKER_TASK_APP, WALKER_LABEL: walker_name, MANAGED_BY_LABEL: MANAGED_BY}


def _image(runner: Runner, settings: OperatorSettings) -> tuple[str, str]:
    return (
        runner.image or settings.runner_image,
        runner.image_pull_policy or settings.runner_image_pull_policy,
    )


def _resources(runner: Runner, default: Mapping[str, Mapping[str, str]] | None = None) -> dict[str, Any]:
    """The spec's resources, else the operator's default (so no runner pod is unbounded)."""
    if runner.resources is None:
        return {k: dict(v) for k, v in (default or {}).items() if v}
    out: dict[str, Any] = {}
    if runner.resources.requests:
        out["requests"] = dict(runner.resources.requests)
    if runner.resources.limits:
        out["limits"] = dict(runner.resources.limits)
    return out


def _module_parts(
    module: StrategyModule | None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], str | None]:
    """Volumes, mounts and the ``BACKTEST_KIT_LOAD`` value for an optional strategy module."""
    if module is None:
        return [], [], None
    if module.config_map is not None:
        volume = {
            "name": "strategy",
            "configMap": {
                "name": module.config_map.name,
                "items": [{"key": module.config_map.key, "path": module.config_map.key}],
            },
        }
        mount = {"name": "strategy", "mountPath": MODULE_DIR, "readOnly": True}
        return [volume], [mount], f"{MODULE_DIR}/{module.config_map.key}"
    return [], [], module.python


def _env(pairs: Sequence[tuple[str, str | None]]) -> list[dict[str, str]]:
    return [{"name": name, "value": value} for name, value in pairs if value is not None]


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


#: The image's non-root user (see the Dockerfile); ``fsGroup`` makes the state volume writable.
RUNNER_UID = 10001


def _container_security() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _pod_security(settings: OperatorSettings) -> dict[str, Any]:
    """Pod-level fields shared by runner and walker-task pods: identity and filesystem group."""
    fields: dict[str, Any] = {
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUNNER_UID,
            "runAsGroup": RUNNER_UID,
            "fsGroup": RUNNER_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    if settings.runner_service_account:
        fields["serviceAccountName"] = settings.runner_service_account
    return fields


def _iso(value: Any) -> str:
    return str(value.isoformat().replace("+00:00", "Z"))


#: Spec fields applied to a running runner over its HTTP API, not baked into the pod.
RUNTIME_FIELDS: set[str] = {"paused"}


def runner_spec_hash(spec: LiveTraderSpec, settings: OperatorSettings) -> str:
    """Hash of every spec field baked into the runner pod (strategy, replay, runner, default image).

    A pod whose ``spec-hash`` annotation differs runs an outdated spec and is replaced once no
    signal is open. Immutable fields (symbol, exchange, storage) are included too, harmlessly.
    ``paused`` is not: the operator applies it over the runner's HTTP API, so toggling it never
    restarts the pod.
    """
    image, pull = _image(spec.runner, settings)
    relevant = {
        "spec": spec.model_dump(mode="json", by_alias=True, exclude_none=True, exclude=RUNTIME_FIELDS),
        "image": image,
        "pull": pull,
    }
    return hashlib.sha256(_json(relevant).encode()).hexdigest()[:16]


def build_runner_pod(
    trader: Mapping[str, Any], settings: OperatorSettings, *, drain: bool = False
) -> dict[str, Any]:
    """The one runner pod of a LiveTrader (``<name>-runner``), mounting its state PVC.

    ``restartPolicy: OnFailure``: a crashed or killed runner (non-zero exit) is restarted in place
    by the kubelet and resumes from the PVC; a runner that drained or reached ``until`` exits 0 and
    the pod ends ``Succeeded``, which is what the deletion finalizer waits for.
    """
    meta = trader["metadata"]
    name = meta["name"]
    spec = parse_trader_spec(trader.get("spec") or {})
    image, pull = _image(spec.runner, settings)
    volumes, mounts, load = _module_parts(spec.strategy.module)
    replay = spec.replay
    env = _env(
        [
            ("BACKTEST_KIT_SYMBOL", spec.symbol),
            ("BACKTEST_KIT_STRATEGY", spec.strategy.name),
            ("BACKTEST_KIT_PARAMS", _json(spec.strategy.parameters)),
            ("BACKTEST_KIT_EXCHANGE", spec.exchange.runner_argument),
            (
                "BACKTEST_KIT_EXCHANGE_OPTIONS",
                _json(spec.exchange.options) if spec.exchange.options else None,
            ),
            ("BACKTEST_KIT_STATE_DIR", STATE_DIR),
            ("BACKTEST_KIT_LOAD", load),
            ("BACKTEST_KIT_REPLAY_FROM", _iso(replay.from_) if replay else None),
            ("BACKTEST_KIT_SPEED", repr(replay.speed) if replay else None),
            ("BACKTEST_KIT_UNTIL", _iso(replay.until) if replay and replay.until else None),
            ("BACKTEST_KIT_CONTROL_TOKEN_FILE", f"{CONTROL_DIR}/{CONTROL_TOKEN_KEY}"),
            # A pod started while its trader is deleted never opens a signal (not part of the hash).
            ("BACKTEST_KIT_DRAIN", "1" if drain else None),
        ]
    )
    control_volume = {
        "name": "control",
        "secret": {
            "secretName": control_secret_name(name),
            "items": [{"key": CONTROL_TOKEN_KEY, "path": CONTROL_TOKEN_KEY}],
            "defaultMode": 0o440,
        },
    }
    container: dict[str, Any] = {
        "name": "runner",
        "image": image,
        "imagePullPolicy": pull,
        "command": ["python", "-m", "backtest_kit_runner", "live"],
        "env": env,
        "ports": [{"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"}],
        "volumeMounts": [
            {"name": "state", "mountPath": STATE_DIR},
            {"name": "control", "mountPath": CONTROL_DIR, "readOnly": True},
            *mounts,
        ],
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 5},
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": "http"},
            "periodSeconds": 10,
            "failureThreshold": 6,
        },
        "terminationMessagePath": TERMINATION_LOG,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": _container_security(),
    }
    resources = _resources(spec.runner, settings.runner_resources)
    if resources:
        container["resources"] = resources
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": runner_pod_name(name),
            "namespace": meta.get("namespace"),
            "labels": {**settings.pod_labels, **trader_labels(name)},
            "annotations": {SPEC_HASH_ANNOTATION: runner_spec_hash(spec, settings)},
            "ownerReferences": [owner_reference(trader, kind="LiveTrader")],
        },
        "spec": {
            "restartPolicy": "OnFailure",
            "terminationGracePeriodSeconds": 30,
            "enableServiceLinks": False,
            "automountServiceAccountToken": False,
            **_pod_security(settings),
            "containers": [container],
            "volumes": [
                {"name": "state", "persistentVolumeClaim": {"claimName": state_pvc_name(name)}},
                control_volume,
                *volumes,
            ],
        },
    }


def build_control_secret(trader: Mapping[str, Any], token: str) -> dict[str, Any]:
    """The Secret ``<trader>-control`` holding the runner's control token, owned by the trader."""
    meta = trader["metadata"]
    name = meta["name"]
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": control_secret_name(name),
            "namespace": meta.get("namespace"),
            "labels": trader_labels(name),
            "ownerReferences": [owner_reference(trader, kind="LiveTrader")],
        },
        "data": {CONTROL_TOKEN_KEY: base64.b64encode(token.encode()).decode()},
    }


def secret_token(secret: Mapping[str, Any]) -> str | None:
    raw = (secret.get("data") or {}).get(CONTROL_TOKEN_KEY)
    if not raw:
        return None
    try:
        return base64.b64decode(str(raw)).decode().strip() or None
    except (ValueError, UnicodeDecodeError):
        return None


#: Bounds of the state inspection pod: it reads a few small files and exits.
INSPECTION_DEADLINE_S = 120
INSPECTION_RESOURCES = {"requests": {"cpu": "10m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}}


def build_inspection_pod(
    trader: Mapping[str, Any], settings: OperatorSettings, *, runner_pod: Mapping[str, Any] | None
) -> dict[str, Any]:
    """A short pod running ``state show`` on the trader's volume, mounted read-only.

    The operator decides a deletion from what the volume holds, not from how the runner exited, so
    when the runner cannot report (it cannot start, or it stopped at ``replay.until``) this pod
    prints the open and scheduled signals to its termination message. It runs on the runner pod's
    node (a ``ReadWriteOnce`` volume attaches to one node) and records which runner pod it
    inspected: a newer runner makes the answer stale.
    """
    meta = trader["metadata"]
    name = meta["name"]
    spec = parse_trader_spec(trader.get("spec") or {})
    image, pull = _image(spec.runner, settings)
    runner_meta = (runner_pod or {}).get("metadata") or {}
    node = ((runner_pod or {}).get("spec") or {}).get("nodeName")
    labels = {**trader_labels(name), NAME_LABEL: INSPECT_APP}
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "activeDeadlineSeconds": INSPECTION_DEADLINE_S,
        "terminationGracePeriodSeconds": 5,
        "enableServiceLinks": False,
        "automountServiceAccountToken": False,
        **_pod_security(settings),
        "containers": [
            {
                "name": "inspect",
                "image": image,
                "imagePullPolicy": pull,
                "command": ["python", "-m", "backtest_kit_runner", "state", "show"],
                "env": _env(
                    [("BACKTEST_KIT_STATE_DIR", STATE_DIR), ("BACKTEST_KIT_OUTPUT", TERMINATION_LOG)]
                ),
                "volumeMounts": [{"name": "state", "mountPath": STATE_DIR, "readOnly": True}],
                "terminationMessagePath": TERMINATION_LOG,
                "terminationMessagePolicy": "FallbackToLogsOnError",
                "resources": {k: dict(v) for k, v in INSPECTION_RESOURCES.items()},
                "securityContext": _container_security(),
            }
        ],
        "volumes": [
            {
                "name": "state",
                "persistentVolumeClaim": {"claimName": state_pvc_name(name), "readOnly": True},
            }
        ],
    }
    if node:
        pod_spec["nodeName"] = node
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": inspection_pod_name(name),
            "namespace": meta.get("namespace"),
            "labels": {**settings.pod_labels, **labels},
            "annotations": {INSPECTED_RUNNER_ANNOTATION: str(runner_meta.get("uid") or "")},
            "ownerReferences": [owner_reference(trader, kind="LiveTrader")],
        },
        "spec": pod_spec,
    }


def build_pvc(trader: Mapping[str, Any], *, access_mode: str = "ReadWriteOnce") -> dict[str, Any]:
    """The state volume of a LiveTrader (``<name>-state``), ``ReadWriteOnce`` unless the operator
    is set to ``ReadWriteOncePod`` (``state_access_mode``).

    It is owned by the LiveTrader (garbage-collected with it) only with ``reclaimPolicy: Delete``;
    with ``Retain`` it outlives the LiveTrader, and a new LiveTrader of the same name resumes from it.
    """
    meta = trader["metadata"]
    name = meta["name"]
    spec = parse_trader_spec(trader.get("spec") or {})
    pvc_meta: dict[str, Any] = {
        "name": state_pvc_name(name),
        "namespace": meta.get("namespace"),
        "labels": trader_labels(name),
    }
    if spec.storage.reclaim_policy == "Delete":
        pvc_meta["ownerReferences"] = [owner_reference(trader, kind="LiveTrader")]
    pvc_spec: dict[str, Any] = {
        "accessModes": [access_mode],
        "resources": {"requests": {"storage": spec.storage.size}},
    }
    if spec.storage.storage_class_name:
        pvc_spec["storageClassName"] = spec.storage.storage_class_name
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": pvc_meta, "spec": pvc_spec}


def walker_tasks(spec: WalkerSpec) -> list[dict[str, Any]]:
    """``BACKTEST_KIT_TASKS``: one ``{label, strategy, params}`` per strategy or grid member, in
    spec order (one per Job index, or dealt round-robin to ``spec.task_shards`` indices)."""
    return [
        {"label": entry.label, "strategy": entry.name, "params": dict(entry.parameters)}
        for entry in spec.entries
    ]


def build_walker_job(walker: Mapping[str, Any], settings: OperatorSettings) -> dict[str, Any]:
    """An Indexed Job with one completion per strategy, each running ``walker-task``; with a grid,
    one completion per share of the members (``walker-task --shards``).

    Pods never restart in place (``restartPolicy: Never``) so each attempt leaves its own
    termination message. Retries are per index (``backoffLimitPerIndex: 1``), and a task that
    refuses its configuration (exit code 2) fails only its own index at once (``FailIndex``): one
    bad parameter set never costs the other strategies their results. Clusters without per-index
    backoff (before 1.29) ignore both fields and fall back to the default ``backoffLimit``.
    """
    meta = walker["metadata"]
    name = meta["name"]
    spec = parse_walker_spec(walker.get("spec") or {})
    image, pull = _image(spec.runner, settings)
    volumes, mounts, load = _module_parts(spec.module)
    total = len(spec.shares())
    env = _env(
        [
            ("BACKTEST_KIT_TASKS", _json(walker_tasks(spec))),
            ("BACKTEST_KIT_SHARDS", None if spec.task_shards is None else str(spec.task_shards)),
            ("BACKTEST_KIT_SYMBOL", spec.symbol),
            ("BACKTEST_KIT_EXCHANGE", spec.exchange.runner_argument),
            (
                "BACKTEST_KIT_EXCHANGE_OPTIONS",
                _json(spec.exchange.options) if spec.exchange.options else None,
            ),
            ("BACKTEST_KIT_FRAME", f"{_iso(spec.frame.start)}..{_iso(spec.frame.end)}"),
            ("BACKTEST_KIT_FRAME_INTERVAL", spec.frame.interval),
            ("BACKTEST_KIT_METRIC", spec.metric),
            ("BACKTEST_KIT_LOAD", load),
            ("BACKTEST_KIT_OUTPUT", TERMINATION_LOG),
        ]
    )
    container: dict[str, Any] = {
        "name": "walker-task",
        "image": image,
        "imagePullPolicy": pull,
        "command": ["python", "-m", "backtest_kit_runner", "walker-task"],
        "env": env,
        "terminationMessagePath": TERMINATION_LOG,
        # a task that fails before writing its result still reports why (the log's tail)
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": _container_security(),
    }
    if mounts:
        container["volumeMounts"] = mounts
    resources = _resources(spec.runner, settings.walker_resources)
    if resources:
        container["resources"] = resources
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "enableServiceLinks": False,
        "automountServiceAccountToken": False,
        **_pod_security(settings),
        "containers": [container],
    }
    if volumes:
        pod_spec["volumes"] = volumes
    labels = walker_labels(name)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": walker_job_name(name),
            "namespace": meta.get("namespace"),
            "labels": labels,
            "ownerReferences": [owner_reference(walker, kind="Walker")],
        },
        "spec": {
            "completionMode": "Indexed",
            "completions": total,
            "parallelism": min(spec.parallelism, total),
            "backoffLimitPerIndex": 1,
            "activeDeadlineSeconds": settings.walker_active_deadline,
            "ttlSecondsAfterFinished": settings.walker_ttl_after_finished,
            "podFailurePolicy": {
                "rules": [
                    {
                        "action": "FailIndex",
                        "onExitCodes": {"containerName": "walker-task", "operator": "In", "values": [2]},
                    }
                ]
            },
            "template": {"metadata": {"labels": {**settings.pod_labels, **labels}}, "spec": pod_spec},
        },
    }


def build_report_configmap(walker: Mapping[str, Any], report: Mapping[str, Any]) -> dict[str, Any]:
    """The ConfigMap ``<walker>-report`` holding the full ranking as JSON, owned by the Walker."""
    meta = walker["metadata"]
    name = meta["name"]
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": report_configmap_name(name),
            "namespace": meta.get("namespace"),
            "labels": walker_labels(name),
            "ownerReferences": [owner_reference(walker, kind="Walker")],
        },
        "data": {REPORT_KEY: json.dumps(report, indent=2, sort_keys=True)},
    }
