"""How fast does the operator bring 300 LiveTraders to life, and how much memory does it take?

Starts the fake API server (``tests/kubeapi``) in this process, the operator as a subprocess
(``python -m backtest_kit_operator``, exactly as deployed), creates N LiveTraders at once and
measures the time until every one has its PVC, its runner pod and a status. No kubelet runs, so
the pods stay Pending: this measures the operator's reconciliation, not the runner. The operator's
resident memory (VmRSS from /proc) is sampled throughout.

    .venv/bin/python benchmarks/operator_scale.py [--count 300] [--timeout 300]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import kubernetes  # noqa: E402
from tests.kubeapi.server import KubeAPIServer  # noqa: E402

GROUP, VERSION, PLURAL = "backtestkit.dev", "v1alpha1", "livetraders"
NAMESPACE = "bench"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def trader(i: int) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "LiveTrader",
        "metadata": {"name": f"trader-{i:04d}"},
        "spec": {
            "symbol": "SYNUSDT",
            "strategy": {"name": "sma-cross", "parameters": {"fast": 5, "slow": 20}},
            "exchange": {"name": "synthetic"},
            "replay": {"from": "2024-01-01T00:00:00Z", "speed": 60},
        },
    }


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the operator exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit("the operator did not become live")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument("--poll-interval", type=float, default=5.0, help="operator status poll interval")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="operator-scale-"))
    server = KubeAPIServer([REPO / "crds"], history_size=20000).start()
    kubeconfig = server.write_kubeconfig(workdir / "kubeconfig")
    api_client = kubernetes.config.new_client_from_config(str(kubeconfig))
    core = kubernetes.client.CoreV1Api(api_client)
    custom = kubernetes.client.CustomObjectsApi(api_client)
    core.create_namespace({"metadata": {"name": NAMESPACE}})

    liveness = f"http://127.0.0.1:{free_port()}/healthz"
    metrics_port = free_port()
    env = dict(os.environ, KUBECONFIG=str(kubeconfig))
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO / "operator"), str(REPO / "runner"), env.get("PYTHONPATH", "")]
    )
    log_path = workdir / "operator.log"
    argv = [
        sys.executable,
        "-m",
        "backtest_kit_operator",
        "-n",
        NAMESPACE,
        "--liveness",
        liveness,
        "--metrics-port",
        str(metrics_port),
        "--poll-interval",
        str(args.poll_interval),
    ]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    try:
        wait_ready(liveness, proc)
        idle_rss = rss_mib(proc.pid)
        print(f"operator live; RSS before any LiveTrader: {idle_rss:.1f} MiB")

        t0 = time.monotonic()
        with ThreadPoolExecutor(max_workers=16) as pool:
            list(
                pool.map(
                    lambda i: custom.create_namespaced_custom_object(
                        GROUP, VERSION, NAMESPACE, PLURAL, trader(i)
                    ),
                    range(args.count),
                )
            )
        created = time.monotonic() - t0
        print(f"created {args.count} LiveTraders in {created:.2f} s")

        firsts: dict[str, float] = {}
        peak_rss = idle_rss or 0.0
        counts = {"pvcs": 0, "pods": 0, "statuses": 0}
        deadline = t0 + args.timeout
        while time.monotonic() < deadline:
            pvcs = len(core.list_namespaced_persistent_volume_claim(NAMESPACE).items)
            pods = len(core.list_namespaced_pod(NAMESPACE).items)
            items = custom.list_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL)["items"]
            statuses = sum(1 for item in items if (item.get("status") or {}).get("phase"))
            counts = {"pvcs": pvcs, "pods": pods, "statuses": statuses}
            now = time.monotonic() - t0
            for key, value in counts.items():
                if value >= args.count and key not in firsts:
                    firsts[key] = now
            peak_rss = max(peak_rss, rss_mib(proc.pid) or 0.0)
            if len(firsts) == 3:
                break
            time.sleep(0.25)
        settle_rss = rss_mib(proc.pid)
        time.sleep(max(2 * args.poll_interval, 5))  # a couple of timer rounds at steady state
        steady_rss = rss_mib(proc.pid)
        peak_rss = max(peak_rss, steady_rss or 0.0)

        print(f"all {args.count} PVCs after      {firsts.get('pvcs', float('nan')):7.2f} s")
        print(f"all {args.count} pods after      {firsts.get('pods', float('nan')):7.2f} s")
        print(f"all {args.count} statuses after  {firsts.get('statuses', float('nan')):7.2f} s")
        if len(firsts) < 3:
            print(f"TIMED OUT after {args.timeout} s with {counts}")
        print(
            f"operator RSS: idle {idle_rss:.1f} MiB, when all reconciled {settle_rss:.1f} MiB, "
            f"steady {steady_rss:.1f} MiB, peak {peak_rss:.1f} MiB"
        )
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as response:
            for line in response.read().decode().splitlines():
                if line.startswith("backtest_kit_operator_reconciliations_total"):
                    print(line)
        return 0 if len(firsts) == 3 else 1
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        api_client.close()
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
