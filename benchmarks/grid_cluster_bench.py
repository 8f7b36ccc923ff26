"""Grid on the test cluster: the 64-pair SMA grid as a Walker with ``spec.grid``, Job parallelism 4.

The same workload as ``grid_bench.py``'s 64-pair grid (``sma-cross``, fast 3..10, slow 20..55
step 5, metric ``sharpeRatio``, synthetic market, 2024-01-01T00:00Z..2024-12-30T23:59Z), run the
way the e2e suite runs a Walker: the test API server (``tests/kubeapi``) serving ``crds/``, the
local kubelet running the Job's pods as local processes, and the operator as a subprocess
(``python -m backtest_kit_operator``), all started with the e2e suite's own helpers
(``tests/e2e/conftest.py``). It measures the time from creating the Walker to its status being
``Done`` with every member ranked, each pod's wall time (from the kubelet's ``startedAt`` and
``finishedAt``, whole seconds, and as watched by the benchmark), and, alternating with the
Walkers (the cluster idle meanwhile), the same grid through the CLI (``walker --grid ... --jobs
2``, whole process) for comparison; the two must rank the same best member with the same metric
values. On a machine with fewer cores than the parallelism the pods oversubscribe it (printed).

    .venv/bin/python benchmarks/grid_cluster_bench.py [--parallelism 4] [--cli-jobs 2] [--runs 1]
    .venv/bin/python benchmarks/grid_cluster_bench.py --kubeconfig ~/.kube/config

With ``--kubeconfig`` the Walker goes to a fresh namespace of that cluster instead (the e2e
suite's real-cluster path: the CRDs are applied, the cluster's Job controller makes the pods and
the local kubelet runs the ones labelled ``backtestkit.dev/local-kubelet``); the namespace is
deleted at the end.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import kubernetes  # noqa: E402
from grid_bench import FRAME, GRID64, ours  # noqa: E402
from tests.e2e.conftest import (  # noqa: E402
    Cluster,
    OperatorProcess,
    real_cluster,
    wait_for,
)
from tests.kubeapi.fixtures import start_kube_api  # noqa: E402
from tests.kubeapi.kubelet import LocalKubelet  # noqa: E402

METRIC = "sharpeRatio"
TASK_SELECTOR = "app.kubernetes.io/name=backtest-kit-walker-task"


def grid_walker(name: str, parallelism: int) -> dict[str, Any]:
    """The Walker of ``GRID64`` over ``FRAME`` (the CLI benchmark's grid, axes in the same order)."""
    start, end = (t.replace("Z", ":00Z") for t in FRAME.split(".."))
    return {
        "apiVersion": "backtestkit.dev/v1alpha1",
        "kind": "Walker",
        "metadata": {"name": name},
        "spec": {
            "symbol": "SYNUSDT",
            "exchange": {"name": "synthetic"},
            "frame": {"start": start, "end": end, "interval": "1m"},
            "strategies": [{"name": "sma-cross"}],
            "grid": {"fast": {"from": 3, "to": 10}, "slow": {"from": 20, "to": 55, "step": 5}},
            "metric": METRIC,
            "parallelism": parallelism,
        },
    }


@contextmanager
def test_cluster(workdir: Path, kubeconfig: Path | None) -> Iterator[Cluster]:
    """The e2e suite's cluster: the test API server and the local kubelet, or a real cluster."""
    if kubeconfig is not None:
        yield from real_cluster(workdir, kubeconfig)
        return
    api, stop_api = start_kube_api(workdir / "kube-api")
    api_client = api.api_client()
    namespace = f"grid-{uuid.uuid4().hex[:6]}"
    core: Any = kubernetes.client.CoreV1Api(api_client)
    core.create_namespace({"metadata": {"name": namespace}})
    kubelet = LocalKubelet(api.kubeconfig, root=workdir / "kubelet", cwd=REPO, restart_backoff=(0.2, 1.0))
    kubelet.start()
    try:
        yield Cluster(api.kubeconfig, namespace, kubelet, api_client, real=False, api_url=api.url)
    finally:
        kubelet.stop()
        api_client.close()
        stop_api()


class PodClock:
    """Watches the task pods and notes, on this process's clock, when each first ran and ended."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.running: dict[str, float] = {}
        self.ended: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> PodClock:
        self._thread.start()
        return self

    def _run(self) -> None:
        watch: Any = kubernetes.watch
        watcher = watch.Watch()
        while not self._stop.is_set():
            try:
                for event in watcher.stream(
                    self.cluster.core.list_namespaced_pod,
                    self.cluster.namespace,
                    label_selector=TASK_SELECTOR,
                    timeout_seconds=2,
                ):
                    pod, now = event["object"], time.perf_counter()
                    name = pod.metadata.name
                    for status in pod.status.container_statuses or []:
                        if status.state and status.state.running:
                            self.running.setdefault(name, now)
                        if status.state and status.state.terminated:
                            self.ended.setdefault(name, now)
                    if self._stop.is_set():
                        break
            except Exception:  # best effort, like the e2e suite's PodRecorder
                time.sleep(0.2)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def pod_walls(cluster: Cluster) -> list[dict[str, Any]]:
    """Each task pod's index and its container's startedAt..finishedAt (whole seconds)."""
    rows = []
    for pod in cluster.core.list_namespaced_pod(cluster.namespace, label_selector=TASK_SELECTOR).items:
        annotations = pod.metadata.annotations or {}
        index = annotations.get("batch.kubernetes.io/job-completion-index", "?")
        for status in pod.status.container_statuses or []:
            done = status.state.terminated if status.state else None
            if done is not None and done.started_at and done.finished_at:
                wall = (_time(done.finished_at) - _time(done.started_at)).total_seconds()
                rows.append({"name": pod.metadata.name, "index": index, "wall_s": wall})
    return sorted(rows, key=lambda r: (str(r["index"]).zfill(4), r["name"]))


def _time(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def walk_on_cluster(
    cluster: Cluster, operator: OperatorProcess, parallelism: int, timeout: float
) -> dict[str, Any]:
    """Create the grid Walker; wait until it is Done with every member ranked."""
    name = f"grid64-{uuid.uuid4().hex[:4]}"
    clock = PodClock(cluster).start()
    started = time.perf_counter()
    cluster.create("walkers", grid_walker(name, parallelism))

    def ranked() -> dict[str, Any] | None:
        status = (cluster.get("walkers", name) or {}).get("status") or {}
        if status.get("phase") == "Failed":
            raise SystemExit(f"the Walker failed: {status.get('message')}\n{operator.log_tail()}")
        rows = status.get("results") or []
        complete = len(rows) == 64 and all(r.get("rank") for r in rows)
        return status if status.get("phase") == "Done" and complete else None

    status = wait_for(
        "the Walker to be Done, all members ranked", ranked, timeout=timeout, interval=0.1, operator=operator
    )
    wall = time.perf_counter() - started
    clock.stop()
    job = cluster.batch.read_namespaced_job(f"{name}-job", cluster.namespace)
    watched = {pod: clock.ended[pod] - clock.running[pod] for pod in clock.ended if pod in clock.running}
    first_run = min(clock.running.values(), default=started) - started
    last_end = max(clock.ended.values(), default=started + wall) - started
    return {
        "wall_s": wall,
        "status": status,
        "completions": job.spec.completions,
        "parallelism": job.spec.parallelism,
        "pods": pod_walls(cluster),
        "watched": watched,
        "first_run_s": first_run,
        "after_last_pod_s": wall - last_end,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parallelism", type=int, default=4, help="the Walker's Job parallelism")
    parser.add_argument("--cli-jobs", type=int, default=2, help="--jobs of the CLI comparison")
    parser.add_argument("--runs", type=int, default=1, help="Walkers (and CLI runs) to time")
    parser.add_argument("--timeout", type=float, default=900, help="seconds to wait for one Walker")
    parser.add_argument("--kubeconfig", type=Path, help="run against this cluster instead")
    args = parser.parse_args()

    cores = os.cpu_count() or 1
    where = f"the cluster of {args.kubeconfig.name}" if args.kubeconfig else "the test cluster"
    print(f"64-pair SMA grid ({GRID64}), 365 days ({FRAME}), metric {METRIC}, on {where}")
    if not args.kubeconfig and args.parallelism > cores:
        print(
            f"note: this machine has {cores} cores; Job parallelism {args.parallelism} oversubscribes "
            f"them (the pods, the operator, the API server and the kubelet share {cores} cores)"
        )
    walks, cli = [], []
    with tempfile.TemporaryDirectory() as tmp, test_cluster(Path(tmp), args.kubeconfig) as cluster:
        operator = OperatorProcess(cluster, Path(tmp) / "operator.log")
        operator.start()
        try:
            for _ in range(args.runs):  # alternating, the cluster idle during the CLI's runs
                walks.append(walk_on_cluster(cluster, operator, args.parallelism, args.timeout))
                cli.append(ours(GRID64, args.cli_jobs))
        finally:
            operator.stop()
        log = operator.log_path.read_text(errors="replace").splitlines()
        trouble = [line for line in log if " ERROR " in line or "Traceback" in line]

    walk = walks[0]
    status = walk["status"]
    walls = ", ".join(f"{w['wall_s']:.2f}" for w in walks)
    print(
        f"Walker spec.grid, parallelism {walk['parallelism']} ({walk['completions']} Job indices, "
        f"{64 // walk['completions']} members each):"
    )
    print(
        f"  create -> Done, 64 members ranked: {statistics.median(w['wall_s'] for w in walks):6.2f} s "
        f"(runs {walls}; first pod running after {walk['first_run_s']:.2f} s; "
        f"best {status['bestStrategy']} {METRIC} {status['bestMetric']:.4f})"
    )
    print(f"  Done {walk['after_last_pod_s']:.2f} s after the last pod was seen terminated")
    print("  per pod (first run): index  startedAt..finishedAt  watched running..terminated")
    for pod in walk["pods"]:
        seen = walk["watched"].get(pod["name"])
        watched = f"{seen:8.2f} s" if seen is not None else "       - "
        print(f"    {pod['index']:>5}  {pod['wall_s']:8.0f} s  {watched}")
    pod_sum = sum(walk["watched"].values())
    print(f"  sum of watched pod walls {pod_sum:.2f} s = {pod_sum / 64:.3f} s per member")
    cli_walls = ", ".join(f"{c['wall_s']:.2f}" for c in cli)
    print(
        f"CLI walker --grid --jobs {args.cli_jobs} (whole process): "
        f"{statistics.median(c['wall_s'] for c in cli):6.2f} s (runs {cli_walls}; best {cli[0]['best']})"
    )
    ratio = statistics.median(w["wall_s"] for w in walks) / statistics.median(c["wall_s"] for c in cli)
    print(f"  ratio Walker / CLI: {ratio:.2f}")
    theirs = {r["label"]: r["metricValue"] for r in status["results"]}
    same = theirs.keys() == cli[0]["metrics"].keys() and all(
        _close(theirs[k], cli[0]["metrics"][k]) for k in theirs
    )
    agree = "agree" if same and status["bestStrategy"] == cli[0]["best"] else "DIFFER"
    print(f"  Walker and CLI {agree} on every member's {METRIC} and the best member")
    print(f"operator log: {len(trouble)} error lines" + "".join(f"\n  {line}" for line in trouble[:5]))


def _close(a: float | None, b: float | None) -> bool:
    return a == b or (a is not None and b is not None and abs(a - b) <= 1e-9 * max(1.0, abs(b)))


if __name__ == "__main__":
    main()
