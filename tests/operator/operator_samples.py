"""Custom-object bodies shared by the operator unit tests."""

from __future__ import annotations

import copy
from typing import Any

from backtest_kit_operator.settings import OperatorSettings

SETTINGS = OperatorSettings(runner_image="example.org/runner:test")

TRADER: dict[str, Any] = {
    "apiVersion": "backtestkit.dev/v1alpha1",
    "kind": "LiveTrader",
    "metadata": {"name": "btc", "namespace": "trading", "uid": "uid-btc", "generation": 3},
    "spec": {
        "symbol": "BTCUSDT",
        "strategy": {"name": "sma-cross", "parameters": {"fast": 5, "slow": 20}},
        "exchange": {"name": "synthetic"},
        "replay": {"from": "2024-01-01T00:00:00Z", "speed": 60},
        "storage": {"size": "2Gi", "reclaimPolicy": "Delete"},
    },
}

WALKER: dict[str, Any] = {
    "apiVersion": "backtestkit.dev/v1alpha1",
    "kind": "Walker",
    "metadata": {"name": "jan", "namespace": "research", "uid": "uid-jan", "generation": 1},
    "spec": {
        "symbol": "BTCUSDT",
        "exchange": {"name": "synthetic"},
        "frame": {"start": "2024-01-01T00:00:00Z", "end": "2024-01-02T00:00:00Z"},
        "strategies": [
            {"name": "sma-cross", "label": "fast", "parameters": {"fast": 5}},
            {"name": "sma-cross", "label": "slow", "parameters": {"fast": 20}},
            {"name": "momentum"},
        ],
        "metric": "sharpeRatio",
        "parallelism": 8,
    },
}


def trader(**spec_changes: Any) -> dict[str, Any]:
    body = copy.deepcopy(TRADER)
    body["spec"].update(spec_changes)
    return body


def walker(**spec_changes: Any) -> dict[str, Any]:
    body = copy.deepcopy(WALKER)
    body["spec"].update(spec_changes)
    return body


def pod(
    phase: str = "Running",
    *,
    spec_hash: str = "h1",
    deleting: bool = False,
    uid: str = "pod-uid",
    ip: str | None = "10.0.0.7",
    container: dict[str, Any] | None = None,
    annotations: dict[str, str] | None = None,
    reason: str | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": "btc-runner",
        "namespace": "trading",
        "uid": uid,
        "annotations": {"backtestkit.dev/spec-hash": spec_hash, **(annotations or {})},
    }
    if deleting:
        meta["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    status: dict[str, Any] = {"phase": phase}
    if ip:
        status["podIP"] = ip
    if container is not None:
        status["containerStatuses"] = [{"name": "runner", **container}]
    if reason:
        status["reason"] = reason
    return {"metadata": meta, "status": status}


SIGNAL = {
    "id": "sig-1",
    "position": "long",
    "priceOpen": 42000.5,
    "priceTakeProfit": 43000.0,
    "priceStopLoss": 41000.0,
    "pendingAt": 1704067200000,
}


def runner_status(phase: str = "running", signal: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "phase": phase,
        "symbol": "BTCUSDT",
        "strategy": "sma-cross",
        "exchange": "synthetic",
        "openSignal": signal,
        "scheduledSignal": None,
        "lastTickAt": "2024-01-01T01:00:00Z",
        "ticks": 60,
        "tickErrors": 0,
        "signalsOpened": 2,
        "signalsClosed": 1,
        "signalsCancelled": 0,
        "realizedPnlPercentage": 1.25,
        "realizedPnlCost": 12.5,
        "config": {},
    }
