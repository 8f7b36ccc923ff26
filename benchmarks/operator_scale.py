"""How fast does the operator bring 300 LiveTraders to life, and how much memory does it take?

Starts the fake API server (``tests/kubeapi``) in this process, the operator as a subprocess
(``python -m backtest_kit_operator``, exactly as deployed), creates N LiveTraders at once and
measures the time until every one has its PVC, its runner pod and a status. No kubelet runs, so
the pods stay Pending: this measures the operator's reconciliation, not the runner. The operator's
resident memory (VmRSS from /proc) is sampled throughout.

    .venv/bin/python benchmarks/operator_scale.py [--count 300] [--timeout 300]
    .venv/bin/python benchmarks/operator_scale.py --kubeconfig ~/.kube/config --count 50

With ``--kubeconfig`` the same measurement runs against a real cluster instead of the fake server:
the CRDs of ``crds/`` are applied, the LiveTraders go into a fresh namespace, and at the end their
finalizers are dropped and the namespace deleted. There the cluster's scheduler places the runner
pods, so the operator's work is the same but the pods may start (``--runner-image`` names them).
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
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import kubernetes  # noqa: E402
import yaml  # noqa: E402
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


def apply_crds(api_client: Any) -> None:
    """Create or replace the CRDs of ``crds/`` on a real cluster."""
    ext = kubernetes.client.ApiextensionsV1Api(api_client)
    for path in sorted((REPO / "crds").glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        try:
            ext.create_custom_resource_definition(crd)
        except kubernetes.client.ApiException as exc:
            if exc.status != 409:
                raise
            current = ext.read_custom_resource_definition(crd["metadata"]["name"])
            crd["metadata"]["resourceVersion"] = current.metadata.resource_version
            ext.replace_custom_resource_definition(crd["metadata"]["name"], crd)
    time.sleep(2)


def connect(real: Path | None, workdir: Path) -> tuple[KubeAPIServer | None, Path, Any]:
    """The fake server (started here) or the real cluster of ``real``: (server, kubeconfig, client)."""
    global NAMESPACE
    if real is None:
        server = KubeAPIServer([REPO / "crds"], history_size=20000).start()
        kubeconfig = server.write_kubeconfig(workdir / "kubeconfig")
        return server, kubeconfig, kubernetes.config.new_client_from_config(str(kubeconfig))
    kubeconfig = real.expanduser()
    api_client = kubernetes.config.new_client_from_config(str(kubeconfig))
    apply_crds(api_client)
    NAMESPACE = f"bench-{uuid.uuid4().hex[:6]}"  # never collide with what the cluster holds
    return None, kubeconfig, api_client


def release_namespace(custom: Any, core: Any) -> None:
    """Drop the LiveTraders' finalizers (the operator is gone) and delete the benchmark namespace."""
    for item in custom.list_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL)["items"]:
        custom.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            NAMESPACE,
            PLURAL,
            item["metadata"]["name"],
            {"metadata": {"finalizers": None}},
            _content_type="application/merge-patch+json",
        )
    core.delete_namespace(NAMESPACE)


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
    parser.add_argument(
        "--kubeconfig", type=Path, default=None, help="a real cluster instead of the fake server"
    )
    parser.add_argument("--runner-image", default=None, help="runner image of the pods (real cluster)")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="operator-scale-"))
    server, kubeconfig, api_client = connect(args.kubeconfig, workdir)
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
        *(["--runner-image", args.runner_image] if args.runner_image else []),
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
        if server is None:
            release_namespace(custom, core)
        api_client.close()
        if server is not None:
            server.stop()


if __name__ == "__main__":
    sys.exit(main())
