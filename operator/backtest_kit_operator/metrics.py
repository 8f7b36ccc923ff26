"""The operator's own Prometheus metrics (names from CONTRACTS.md), in an isolated registry.

An isolated registry keeps the exposition to exactly the contract's series (no process or
platform collectors from other libraries) and lets tests create a fresh one. The
:func:`reconciliation` context manager labels every handler run with its outcome, so handlers
stay one line longer instead of repeating try/except blocks.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import kopf
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server


class OperatorMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self.reconciliations = Counter(
            "backtest_kit_operator_reconciliations_total",
            "Handler runs by custom resource kind and outcome (success, retry, permanent, error).",
            ["kind", "result"],
            registry=self.registry,
        )
        self.drains_in_progress = Gauge(
            "backtest_kit_operator_drains_in_progress",
            "LiveTraders being drained before deletion, as seen by this operator process.",
            registry=self.registry,
        )
        self.drain_duration = Histogram(
            "backtest_kit_operator_drain_duration_seconds",
            "Time from the deletion request to the release of the finalizer.",
            buckets=(1, 5, 15, 30, 60, 120, 300, 900, 1800, 3600, 4 * 3600, 24 * 3600),
            registry=self.registry,
        )
        self._draining: set[str] = set()

    def drain_started(self, key: str) -> None:
        self._draining.add(key)
        self.drains_in_progress.set(len(self._draining))

    def drain_finished(self, key: str, seconds: float | None) -> None:
        self._draining.discard(key)
        self.drains_in_progress.set(len(self._draining))
        if seconds is not None and seconds >= 0:
            self.drain_duration.observe(seconds)

    def serve(self, port: int, addr: str = "0.0.0.0") -> None:
        """Expose ``/metrics`` on ``port`` in a daemon thread (0 disables)."""
        if port:
            start_http_server(port, addr=addr, registry=self.registry)

    @contextlib.contextmanager
    def reconciliation(self, kind: str) -> Iterator[None]:
        """Count one handler run of ``kind`` by how it ended; exceptions pass through."""
        try:
            yield
        except kopf.TemporaryError:
            self.reconciliations.labels(kind=kind, result="retry").inc()
            raise
        except kopf.PermanentError:
            self.reconciliations.labels(kind=kind, result="permanent").inc()
            raise
        except Exception:
            self.reconciliations.labels(kind=kind, result="error").inc()
            raise
        else:
            self.reconciliations.labels(kind=kind, result="success").inc()
