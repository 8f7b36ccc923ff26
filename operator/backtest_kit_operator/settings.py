"""Operator-wide settings, read once from ``BACKTEST_KIT_OPERATOR_*`` environment variables.

The kopf decorators need some values (the status poll interval) when the handlers module is
imported, and the manifest builders need others (the default runner image) without doing any I/O
themselves, so the values live in one frozen object that ``__main__`` fills from flags and the
environment before the handlers are imported.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

ENV_PREFIX = "BACKTEST_KIT_OPERATOR_"
DEFAULT_RUNNER_IMAGE = "ghcr.io/backtest-kit/backtest-kit-runner:0.1.0"
JSON_FIELDS = frozenset({"pod_labels", "runner_resources", "walker_resources"})


class OperatorSettings(BaseModel):
    """What the operator needs to know besides the objects it watches."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    runner_image: str = Field(DEFAULT_RUNNER_IMAGE, min_length=1)
    """Image of runner pods and Walker Jobs when the spec names none."""
    runner_image_pull_policy: str = "IfNotPresent"
    runner_service_account: str | None = None
    """Service account of runner and walker-task pods (it needs no API permission: the operator
    polls the runners); ``None`` leaves the namespace's default. Its token is never mounted."""
    poll_interval: float = Field(5.0, gt=0)
    """Seconds between two ``GET /status`` polls of a runner (and LiveTrader reconciliations)."""
    drain_retry_delay: float = Field(3.0, gt=0)
    """Seconds between two checks of a draining runner."""
    http_timeout: float = Field(3.0, gt=0)
    """Timeout of one request to a runner."""
    runner_port: int = Field(8080, ge=1, le=65535)
    metrics_port: int = Field(9090, ge=0, le=65535)
    """Port of the operator's own /metrics; 0 disables it."""
    pod_port_annotation: str = "backtestkit.dev/local-port"
    """Pod annotation that, when present, overrides ``runner_port`` (the local test kubelet maps
    each pod's container port to a free host port and records it there)."""
    pod_labels: dict[str, str] = Field(default_factory=dict)
    """Extra labels for runner and walker-task pods (JSON object in the environment), e.g.
    ``{"backtestkit.dev/local-kubelet": "true"}`` so the local test kubelet picks them up."""
    allowed_images: tuple[str, ...] = ()
    """Images a spec may name in ``runner.image`` (comma list; an entry ending in ``*`` is a prefix).
    Empty: only ``runner_image``. Any other image is refused (phase ``Failed``, an Event)."""
    runner_resources: dict[str, dict[str, str]] = Field(
        default_factory=lambda: {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}}
    )
    """Resources of a runner container whose spec names none (JSON object)."""
    walker_resources: dict[str, dict[str, str]] = Field(
        default_factory=lambda: {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}}
    )
    """Resources of a walker-task container whose spec names none (JSON object)."""
    walker_active_deadline: int = Field(6 * 3600, ge=60)
    """``activeDeadlineSeconds`` of Walker Jobs: a walk still running after this fails."""
    walker_ttl_after_finished: int = Field(7 * 24 * 3600, ge=0)
    """``ttlSecondsAfterFinished`` of Walker Jobs (the Walker keeps its status and report)."""
    status_limit_bytes: int = Field(256 * 1024, ge=1024)
    """Most bytes read from a runner's ``/status``; a larger answer marks the runner misbehaving."""
    parallel_reconciles: int = Field(16, ge=1)
    """Most LiveTrader passes that run at once (each waits its turn otherwise). A burst of new
    traders would otherwise run one pass per trader all at once: their requests in flight and
    their transient memory add up to the operator's peak RSS, while the API calls go through a
    few threads anyway. 16 keeps those threads and the runner polls busy."""
    state_access_mode: Literal["ReadWriteOnce", "ReadWriteOncePod"] = "ReadWriteOnce"
    """Access mode of the runner state PVCs. ``ReadWriteOncePod`` (CSI volumes, Kubernetes 1.29+)
    lets one pod only mount the volume, even on one node; the runner's writer lock already keeps a
    second writer out, this keeps it from even starting. Applies to PVCs created from then on."""

    def image_allowed(self, image: str) -> bool:
        allowed = self.allowed_images or (self.runner_image,)
        return any(image.startswith(a[:-1]) if a.endswith("*") else image == a for a in allowed)


def _value(environ: Mapping[str, str], name: str) -> str | None:
    raw = environ.get(ENV_PREFIX + name.upper())
    return raw.strip() if raw and raw.strip() else None


def load_settings(environ: Mapping[str, str] | None = None) -> OperatorSettings:
    """Settings from ``BACKTEST_KIT_OPERATOR_<FIELD>`` variables, defaults for the rest."""
    env = os.environ if environ is None else environ
    given: dict[str, object] = {}
    for name in OperatorSettings.model_fields:
        value = _value(env, name)
        if value is None:
            continue
        if name in JSON_FIELDS:
            given[name] = json.loads(value)
        elif name == "allowed_images":
            given[name] = tuple(part.strip() for part in value.split(",") if part.strip())
        else:
            given[name] = value
    return OperatorSettings.model_validate(given)
