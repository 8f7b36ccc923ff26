"""How fast does the operator bring 1,000 LiveTraders to Running, and how much memory does it take?

Starts the test API server (``tests/kubeapi``) in this process, the operator as a subprocess
(``python -m backtest_kit_operator``, exactly as deployed), creates N LiveTraders at once and
measures the time until every one has its PVC, its runner pod, a status, and finally status phase
``Running``. The operator's resident memory is sampled throughout (VmRSS, and VmHWM, the kernel's
high-water mark, at the end).

A thousand runner processes do not fit on a small machine, so no kubelet runs them. Instead a
pod-status driver plays the scheduler and the kubelet's status reporter: it watches the runner
pods, binds each new one to a node (``pods/binding``), probes the runner's ``/readyz`` and posts
the pod ``Running`` and ``Ready`` through ``pods/status``, as a kubelet does once the container
is up. What the operator then reads from the runner (``GET http://<podIP>:<port>/status``) is
answered by one small HTTP server in a subprocess that speaks like a runner: ``/status``,
``/readyz``, ``/healthz`` and the ``POST`` controls. All pods get the pod IP 127.0.0.1 and the
operator is told the runner port (``BACKTEST_KIT_OPERATOR_RUNNER_PORT``), the way a cluster gives
each pod its own IP and every runner listens on 8080.

    .venv/bin/python benchmarks/operator_scale.py [--count 1000] [--timeout 300]
    .venv/bin/python benchmarks/operator_scale.py --kubeconfig ~/.kube/config --count 50

With ``--kubeconfig`` the same measurement runs against a real cluster instead of the test
server: the CRDs of ``crds/`` are applied, the LiveTraders go into a fresh namespace, and at the
end their finalizers are dropped and the namespace deleted. There the cluster's scheduler and
kubelets run the runner pods for real (``--runner-image`` names the image), so "Running" needs
a working runner image; ``--wait status`` stops at "every trader has a status" instead.

Against the test server the benchmark also counts the API requests the operator (kopf and its own
client) sent, per trader: until all are Running, and per second over a steady-state window.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import kubernetes  # noqa: E402
from tests.e2e.conftest import apply_crds  # noqa: E402
from tests.kubeapi.audit import permission  # noqa: E402
from tests.kubeapi.server import KubeAPIServer  # noqa: E402

GROUP, VERSION, PLURAL = "backtestkit.dev", "v1alpha1", "livetraders"
NAMESPACE = "bench"
RUNNER_SELECTOR = "app.kubernetes.io/name=backtest-kit-runner"
BENCH_AGENT = "operator-scale-benchmark"
DRIVER_AGENT = "operator-scale-kubelet"
NODE = "bench-node"
POD_IP = "127.0.0.1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def proc_mib(pid: int, field: str = "VmRSS") -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
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


# The runners' HTTP API, served once for every pod ------------------------------------------------


def runner_status_document() -> dict[str, Any]:
    """A runner's ``/status`` while it trades: flat, ticking once a minute (live speed)."""
    minute = int(time.time() // 60) * 60
    started = int(time.time() // 3600) * 3600
    return {
        "phase": "running",
        "symbol": "SYNUSDT",
        "strategy": "sma-cross",
        "exchange": "synthetic",
        "openSignal": None,
        "scheduledSignal": None,
        "lastTickAt": datetime.fromtimestamp(minute, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "ticks": (minute - started) // 60 + 1,
        "tickErrors": 0,
        "signalsOpened": 0,
        "signalsClosed": 0,
        "signalsCancelled": 0,
        "realizedPnlPercentage": 0.0,
        "realizedPnlCost": 0.0,
        "ready": True,
        "frozen": None,
        "paused": False,
        "closeRequested": False,
        "stopReason": None,
        "config": {"symbol": "SYNUSDT", "strategy": "sma-cross", "params": {"fast": 5, "slow": 20}},
    }


def serve_runner_api(port: int) -> None:
    """Answer like a runner on 127.0.0.1:``port`` until killed (run in its own process)."""
    from aiohttp import web

    async def status(_: web.Request) -> web.Response:
        return web.json_response(runner_status_document())

    async def probe(_: web.Request) -> web.Response:
        return web.json_response({"ok": True, "detail": "ticking"})

    async def control(request: web.Request) -> web.Response:
        accepted = {"stop": "drain"}.get(request.path.strip("/"), request.path.strip("/"))
        return web.json_response({"accepted": accepted, **runner_status_document()}, status=202)

    app = web.Application()
    app.router.add_get("/status", status)
    app.router.add_get("/readyz", probe)
    app.router.add_get("/healthz", probe)
    for name in ("stop", "pause", "resume", "close"):
        app.router.add_post(f"/{name}", control)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def start_runner_api(workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    log = (workdir / "runner-api.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve-runner-api", str(port)], stdout=log, stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1):
                return proc, port
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("the runner API stand-in did not start")


# The scheduler and the kubelet's status reporter --------------------------------------------------


def running_status(pod: dict[str, Any]) -> dict[str, Any]:
    """What a kubelet posts once the runner container is up and its readiness probe passed."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    containers = (pod.get("spec") or {}).get("containers") or []
    conditions = [
        {"type": kind, "status": "True", "lastTransitionTime": now, "lastProbeTime": None}
        for kind in ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled")
    ]
    return {
        "phase": "Running",
        "conditions": conditions,
        "hostIP": POD_IP,
        "hostIPs": [{"ip": POD_IP}],
        "podIP": POD_IP,
        "podIPs": [{"ip": POD_IP}],
        "startTime": now,
        "containerStatuses": [
            {
                "name": c.get("name", ""),
                "image": c.get("image", ""),
                "imageID": f"bench://{c.get('image', '')}",
                "containerID": f"bench://{uuid.uuid4().hex}",
                "ready": True,
                "started": True,
                "restartCount": 0,
                "state": {"running": {"startedAt": now}},
                "lastState": {},
            }
            for c in containers
        ],
        "qosClass": (pod.get("status") or {}).get("qosClass"),
    }


class PodDriver:
    """Watches the runner pods; binds each new one to ``NODE`` and reports it Running and Ready."""

    def __init__(self, api_client: Any, runner_port: int, workers: int = 4) -> None:
        self.core = kubernetes.client.CoreV1Api(api_client)
        self.runner_port = runner_port
        self.pool = ThreadPoolExecutor(max_workers=workers)
        self.started: set[str] = set()
        self.running = 0
        self.errors: collections.Counter[str] = collections.Counter()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._watch, name="pod-driver", daemon=True)

    def start(self) -> PodDriver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.pool.shutdown(wait=False, cancel_futures=True)

    def _watch(self) -> None:
        rv = ""
        while not self._stop.is_set():
            try:
                response = self.core.list_namespaced_pod(
                    NAMESPACE,
                    label_selector=RUNNER_SELECTOR,
                    watch=True,
                    resource_version=rv or None,
                    timeout_seconds=60,
                    _preload_content=False,
                    _request_timeout=90,
                )
                for line in response:
                    if self._stop.is_set():
                        return
                    event = json.loads(line)
                    pod = event.get("object") or {}
                    rv = (pod.get("metadata") or {}).get("resourceVersion") or rv
                    if event.get("type") in ("ADDED", "MODIFIED"):
                        self._consider(pod)
            except Exception as exc:  # a watch that ends or fails is resumed, like a kubelet's
                self.errors[type(exc).__name__] += 1
                rv = ""
                time.sleep(0.5)

    def _consider(self, pod: dict[str, Any]) -> None:
        meta = pod.get("metadata") or {}
        if meta.get("deletionTimestamp") or (pod.get("status") or {}).get("phase") not in (None, "Pending"):
            return
        with self._lock:
            if meta["uid"] in self.started:
                return
            self.started.add(meta["uid"])
        self.pool.submit(self._start_pod, pod)

    def _start_pod(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        name = meta["name"]
        try:
            if not (pod.get("spec") or {}).get("nodeName"):
                self.core.create_namespaced_pod_binding(
                    name,
                    NAMESPACE,
                    {
                        "apiVersion": "v1",
                        "kind": "Binding",
                        "metadata": {"name": name},
                        "target": {"kind": "Node", "name": NODE},
                    },
                    _preload_content=False,
                )
            # the readiness probe the runner container declares (GET /readyz on its port)
            with urllib.request.urlopen(f"http://{POD_IP}:{self.runner_port}/readyz", timeout=5):
                pass
            self.core.patch_namespaced_pod_status(
                name, NAMESPACE, {"status": running_status(pod)}, _preload_content=False
            )
            with self._lock:
                self.running += 1
        except Exception as exc:
            self.errors[type(exc).__name__] += 1
            with self._lock:
                self.started.discard(meta["uid"])  # the next watch event retries it


# The cluster: the test server here, or a real one -------------------------------------------------


def client_for(kubeconfig: Path, agent: str, pool: int = 16) -> Any:
    configuration = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(str(kubeconfig), client_configuration=configuration)
    configuration.connection_pool_maxsize = pool
    client = kubernetes.client.ApiClient(configuration)
    client.user_agent = agent
    return client


def connect(real: Path | None, workdir: Path) -> tuple[KubeAPIServer | None, Path]:
    """The test server (started here) or the real cluster of ``real``: (server, kubeconfig)."""
    global NAMESPACE
    if real is None:
        server = KubeAPIServer([REPO / "crds"], history_size=20000).start()
        return server, server.write_kubeconfig(workdir / "kubeconfig")
    kubeconfig = real.expanduser()
    apply_crds(client_for(kubeconfig, BENCH_AGENT))
    NAMESPACE = f"bench-{uuid.uuid4().hex[:6]}"  # never collide with what the cluster holds
    return None, kubeconfig


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


def raw_items(fn: Any, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
    """A list call's items as plain JSON (the client's model classes are slow at this size)."""
    response = fn(*args, _preload_content=False, _request_timeout=60, **kwargs)
    return list(json.loads(response.data).get("items") or [])


def observe(core: Any, custom: Any) -> dict[str, int]:
    pvcs = raw_items(core.list_namespaced_persistent_volume_claim, NAMESPACE)
    pods = raw_items(core.list_namespaced_pod, NAMESPACE, label_selector=RUNNER_SELECTOR)
    traders = raw_items(custom.list_namespaced_custom_object, GROUP, VERSION, NAMESPACE, PLURAL)
    phases = [(item.get("status") or {}).get("phase") for item in traders]
    return {
        "pvcs": len(pvcs),
        "pods": len(pods),
        "statuses": sum(1 for phase in phases if phase),
        "running": sum(1 for phase in phases if phase == "Running"),
    }


# Request accounting (test server only) ------------------------------------------------------------


def operator_requests(server: KubeAPIServer) -> list[dict[str, Any]]:
    """Every request the operator sent (kopf's and its own), leaving out this benchmark's."""
    everything: list[dict[str, Any]] = server.call(lambda: list(server.api.requests))
    return [r for r in everything if not r["userAgent"].startswith((BENCH_AGENT, DRIVER_AGENT))]


def request_table(requests: list[dict[str, Any]]) -> collections.Counter[str]:
    counts: collections.Counter[str] = collections.Counter()
    for request in requests:
        needed = permission(request["method"], request["path"], request.get("query") or {})
        if needed is not None:
            group, resource, verb = needed
            counts[f"{verb} {group + '/' if group else ''}{resource}"] += 1
    return counts


def print_requests(label: str, requests: list[dict[str, Any]], per: float) -> None:
    table = request_table(requests)
    total = sum(table.values())
    print(f"operator API requests {label}: {total} ({total / per:.2f} per trader)")
    for what, n in table.most_common():
        print(f"    {what:45s} {n:7d}  {n / per:6.2f} per trader")


# The measurement ---------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument("--poll-interval", type=float, default=None, help="operator status poll interval")
    parser.add_argument(
        "--wait",
        choices=("running", "status"),
        default="running",
        help="stop at every trader Running (default) or at every trader having a status",
    )
    parser.add_argument("--steady", type=float, default=15.0, help="seconds of steady state measured after")
    parser.add_argument(
        "--kubeconfig", type=Path, default=None, help="a real cluster instead of the test server"
    )
    parser.add_argument("--runner-image", default=None, help="runner image of the pods (real cluster)")
    parser.add_argument("--serve-runner-api", type=int, default=None, help=argparse.SUPPRESS)
    return parser.parse_args()


def start_operator(
    args: argparse.Namespace, kubeconfig: Path, workdir: Path, runner_port: int | None
) -> tuple[subprocess.Popen[bytes], str, int]:
    liveness = f"http://127.0.0.1:{free_port()}/healthz"
    metrics_port = free_port()
    env = dict(os.environ, KUBECONFIG=str(kubeconfig))
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO / "operator"), str(REPO / "runner"), env.get("PYTHONPATH", "")]
    )
    if runner_port is not None:
        env["BACKTEST_KIT_OPERATOR_RUNNER_PORT"] = str(runner_port)
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
        *(["--poll-interval", str(args.poll_interval)] if args.poll_interval else []),
        *(["--runner-image", args.runner_image] if args.runner_image else []),
    ]
    with (workdir / "operator.log").open("wb") as log:
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    return proc, liveness, metrics_port


def main() -> int:  # noqa: C901 - one measurement, its steps in order
    args = parse_args()
    if args.serve_runner_api is not None:
        serve_runner_api(args.serve_runner_api)
        return 0

    workdir = Path(tempfile.mkdtemp(prefix="operator-scale-"))
    server, kubeconfig = connect(args.kubeconfig, workdir)
    api_client = client_for(kubeconfig, BENCH_AGENT)
    core = kubernetes.client.CoreV1Api(api_client)
    custom = kubernetes.client.CustomObjectsApi(api_client)
    core.create_namespace({"metadata": {"name": NAMESPACE}})

    runner_api, runner_port, driver = None, None, None
    if server is not None:
        runner_api, runner_port = start_runner_api(workdir)
        driver = PodDriver(client_for(kubeconfig, DRIVER_AGENT), runner_port).start()
    proc, liveness, metrics_port = start_operator(args, kubeconfig, workdir, runner_port)
    goal = "running" if args.wait == "running" else "statuses"
    try:
        wait_ready(liveness, proc)
        idle_rss = proc_mib(proc.pid)
        print(f"operator live; RSS before any LiveTrader: {idle_rss:.1f} MiB")

        t0 = time.monotonic()
        with ThreadPoolExecutor(max_workers=16) as pool:
            list(
                pool.map(
                    lambda i: custom.create_namespaced_custom_object(
                        GROUP, VERSION, NAMESPACE, PLURAL, trader(i), _preload_content=False
                    ),
                    range(args.count),
                )
            )
        created = time.monotonic() - t0
        print(f"created {args.count} LiveTraders in {created:.2f} s")

        firsts: dict[str, float] = {}
        peak_rss = idle_rss or 0.0
        counts: dict[str, int] = {}
        deadline = t0 + args.timeout
        while time.monotonic() < deadline and goal not in firsts:
            counts = observe(core, custom)
            now = time.monotonic() - t0
            for key, value in counts.items():
                if value >= args.count and key not in firsts:
                    firsts[key] = now
            peak_rss = max(peak_rss, proc_mib(proc.pid) or 0.0)
            if proc.poll() is not None:
                print(f"the operator exited with code {proc.returncode}")
                break
            time.sleep(0.5)
        done = goal in firsts
        settle_rss = proc_mib(proc.pid)
        until_running = operator_requests(server) if server is not None else []

        t_steady = time.monotonic()
        time.sleep(args.steady)  # timer rounds at steady state
        steady_s = time.monotonic() - t_steady
        steady_requests = operator_requests(server)[len(until_running) :] if server is not None else []
        steady_rss = proc_mib(proc.pid)
        peak_rss = max(peak_rss, steady_rss or 0.0, proc_mib(proc.pid, "VmHWM") or 0.0)

        def at(key: str) -> str:
            return f"{firsts[key]:7.2f} s" if key in firsts else "    n/a"

        print(f"all {args.count} PVCs after      {at('pvcs')}")
        print(f"all {args.count} pods after      {at('pods')}")
        print(f"all {args.count} statuses after  {at('statuses')}")
        if args.wait == "running":
            print(f"all {args.count} Running after   {at('running')}")
        if not done:
            print(f"TIMED OUT after {args.timeout} s with {counts}")
        print(
            f"operator RSS: idle {idle_rss:.1f} MiB, when all {goal} {settle_rss:.1f} MiB, "
            f"steady {steady_rss:.1f} MiB, peak {peak_rss:.1f} MiB"
        )
        print(f"operator CPU (user+system, whole run): {operator_cpu(proc.pid):.1f} s")
        if server is not None:
            print_requests(f"until all {goal}", until_running, args.count)
            rate = len(steady_requests) / steady_s / args.count
            print(
                f"operator API requests at steady state: {len(steady_requests) / steady_s:.1f}/s "
                f"({rate * 60:.2f} per trader per minute)"
            )
            for what, n in request_table(steady_requests).most_common():
                print(f"    {what:45s} {n / steady_s:7.1f}/s")
        if driver is not None and driver.errors:
            print(f"pod driver errors (retried): {dict(driver.errors)}")
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as response:
            for line in response.read().decode().splitlines():
                if line.startswith("backtest_kit_operator_reconciliations_total"):
                    print(line)
        return 0 if done else 1
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        if driver is not None:
            driver.stop()
        if runner_api is not None:
            runner_api.kill()
        if server is None:
            release_namespace(custom, core)
        api_client.close()
        if server is not None:
            server.stop()


def operator_cpu(pid: int) -> float:
    """CPU seconds (user + system) the operator process has used so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


if __name__ == "__main__":
    sys.exit(main())
