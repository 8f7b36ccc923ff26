"""Minimal kopf handlers used to prove that a real ``kopf run`` works against the fake server.

Run by ``test_kopf.py`` as ``kopf run --standalone -m tests.kubeapi.kopf_probe``: kopf must discover
the test CRD, list/watch it, add its finalizer, patch status from a handler and, on deletion, run
the delete handler and release the finalizer.
"""

from __future__ import annotations

from typing import Any

import kopf

GROUP, VERSION, PLURAL = "test.backtestkit.dev", "v1", "widgets"


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.persistence.finalizer = "test.backtestkit.dev/probe"
    settings.posting.enabled = True
    settings.watching.server_timeout = 30


@kopf.on.create(GROUP, VERSION, PLURAL)
def created(spec: kopf.Spec, body: kopf.Body, patch: kopf.Patch, **_: Any) -> dict[str, Any]:
    patch.status["seen"] = spec.get("symbol")
    kopf.info(body, reason="Seen", message=f"saw {spec.get('symbol')}")  # posts a core/v1 Event
    return {"handled": True}


@kopf.on.update(GROUP, VERSION, PLURAL, field="spec.symbol")
def updated(new: Any, patch: kopf.Patch, **_: Any) -> None:
    patch.status["seen"] = new


@kopf.on.delete(GROUP, VERSION, PLURAL)
def deleted(name: str, logger: kopf.Logger, **_: Any) -> None:
    logger.info(f"widget {name} deleted")
