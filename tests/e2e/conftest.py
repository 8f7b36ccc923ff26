"""End-to-end fixtures: an API server (fake, or a real cluster), the local kubelet, the operator.

By default every test gets a fresh fake API server (``tests/kubeapi``) serving ``crds/`` and a
local kubelet that runs pods and Jobs as local processes. With ``E2E_KUBECONFIG`` naming a
kubeconfig, the same tests run against that cluster instead: the CRDs are applied, each test gets
its own namespace, and the local kubelet only runs pods labelled ``backtestkit.dev/local-kubelet``
(the operator is told to add that label), leaving Jobs to the cluster's own controller.

The operator always runs for real: ``python -m backtest_kit_operator`` as a subprocess, talking
HTTP to the API server, so its restarts are real process restarts.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.kubeapi import audit  # noqa: E402
from tests.kubeapi.fixtures import kube_api_factory, local_kubelet_factory  # noqa: E402
from tests.kubeapi.kubelet import LocalKubelet  # noqa: E402

from backtest_kit_operator.cluster import USER_AGENT as OPERATOR_USER_AGENT  # noqa: E402

__all__ = ["kube_api_factory", "local_kubelet_factory"]

GROUP, VERSION = "backtestkit.dev", "v1alpha1"
LOCAL_LABEL = "backtestkit.dev/local-kubelet"
STRATEGY_FILE = Path(__file__).resolve().parent / "strategies" / "e2e_always_long.py"
REAL_KUBECONFIG = os.environ.get("E2E_KUBECONFIG")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Cluster:
    """What a test talks to: the API (kubernetes client), its namespace and the local kubelet."""

    kubeconfig: Path
    namespace: str
    kubelet: LocalKubelet
    api_client: Any
    real: bool
    api_url: str = ""
    """The test API server's URL (empty on a real cluster): its request log feeds the RBAC audit."""

    @property
    def core(self) -> Any:
        return kubernetes.client.CoreV1Api(self.api_client)

    @property
    def batch(self) -> Any:
        return kubernetes.client.BatchV1Api(self.api_client)

    @property
    def custom(self) -> Any:
        return kubernetes.client.CustomObjectsApi(self.api_client)

    def create(self, plural: str, body: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, plural, body
        )
        return result

    def get(self, plural: str, name: str) -> dict[str, Any] | None:
        try:
            result: dict[str, Any] = self.custom.get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, plural, name
            )
        except kubernetes.client.ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return result

    def delete(self, plural: str, name: str) -> None:
        self.custom.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, plural, name)

    def annotate(self, plural: str, name: str, annotations: dict[str, str]) -> None:
        self.custom.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            self.namespace,
            plural,
            name,
            {"metadata": {"annotations": annotations}},
            _content_type="application/merge-patch+json",
        )

    def pod(self, name: str) -> Any:
        try:
            return self.core.read_namespaced_pod(name, self.namespace)
        except kubernetes.client.ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def pvc(self, name: str) -> Any:
        try:
            return self.core.read_namespaced_persistent_volume_claim(name, self.namespace)
        except kubernetes.client.ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def strategy_configmap(self, name: str = "e2e-strategy") -> None:
        body = {
            "metadata": {"name": name},
            "data": {"e2e_always_long.py": STRATEGY_FILE.read_text()},
        }
        self.core.create_namespaced_config_map(self.namespace, body)


def apply_crds(api_client: Any) -> None:
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
    time.sleep(2)  # let the API server publish the (new) schema


@pytest.fixture
def cluster(
    tmp_path: Path,
    kube_api_factory: Callable[..., Any],
    local_kubelet_factory: Callable[..., LocalKubelet],
) -> Iterator[Cluster]:
    if REAL_KUBECONFIG:
        yield from real_cluster(tmp_path, Path(REAL_KUBECONFIG))
        return
    api = kube_api_factory()
    namespace = f"e2e-{uuid.uuid4().hex[:6]}"
    api_client = kubernetes.config.new_client_from_config(str(api.kubeconfig))
    kubernetes.client.CoreV1Api(api_client).create_namespace({"metadata": {"name": namespace}})
    kubelet = local_kubelet_factory(api, cwd=REPO, restart_backoff=(0.2, 1.0))
    yield Cluster(api.kubeconfig, namespace, kubelet, api_client, real=False, api_url=api.url)
    api_client.close()


def real_cluster(tmp_path: Path, kubeconfig: Path) -> Iterator[Cluster]:
    api_client = kubernetes.config.new_client_from_config(str(kubeconfig))
    apply_crds(api_client)
    namespace = f"e2e-{uuid.uuid4().hex[:6]}"
    core = kubernetes.client.CoreV1Api(api_client)
    core.create_namespace({"metadata": {"name": namespace}})
    kubelet = LocalKubelet(
        kubeconfig,
        root=tmp_path / "kubelet",
        require_label=True,
        namespace=namespace,
        node_name=f"local-kubelet-{namespace}",  # one Node per run: parallel runs never share one
        run_jobs=False,
        cwd=REPO,
        restart_backoff=(0.2, 1.0),
    ).start()
    cluster = Cluster(kubeconfig, namespace, kubelet, api_client, real=True)
    try:
        yield cluster
    finally:
        # Nothing may keep the namespace alive: release every LiveTrader without waiting for a drain.
        for plural in ("livetraders", "walkers"):
            items = cluster.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, plural)["items"]
            for item in items:
                name = item["metadata"]["name"]
                cluster.custom.patch_namespaced_custom_object(
                    GROUP,
                    VERSION,
                    namespace,
                    plural,
                    name,
                    {"metadata": {"finalizers": None}},
                    _content_type="application/merge-patch+json",
                )
        kubelet.stop()
        core.delete_namespace(namespace)
        api_client.close()


@dataclass
class OperatorProcess:
    """``python -m backtest_kit_operator`` for one namespace, restartable, logging to a file."""

    cluster: Cluster
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    liveness_url: str = ""
    metrics_url: str = ""
    extra_env: dict[str, str] = field(default_factory=dict)
    extra_args: list[str] = field(default_factory=list)

    def start(self) -> None:
        env = dict(os.environ)
        env["KUBECONFIG"] = str(self.cluster.kubeconfig)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(REPO / "operator"), str(REPO / "runner"), env.get("PYTHONPATH", "")]
        )
        env["BACKTEST_KIT_OPERATOR_DRAIN_RETRY_DELAY"] = "0.5"
        env["BACKTEST_KIT_OPERATOR_HTTP_TIMEOUT"] = "2"
        if self.cluster.real:
            env["BACKTEST_KIT_OPERATOR_POD_LABELS"] = json.dumps({LOCAL_LABEL: "true"})
        env.update(self.extra_env)
        self.liveness_url = f"http://127.0.0.1:{free_port()}/healthz"
        metrics_port = free_port()
        self.metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        argv = [
            sys.executable,
            "-m",
            "backtest_kit_operator",
            "--namespace",
            self.cluster.namespace,
            "--liveness",
            self.liveness_url,
            "--metrics-port",
            str(metrics_port),
            "--poll-interval",
            "1",
            "--runner-image",
            "backtest-kit-runner:e2e",
            *self.extra_args,
        ]
        self.starts += 1
        with self.log_path.open("ab") as log:
            log.write(f"\n===== operator start #{self.starts} =====\n".encode())
            self.proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def log_tail(self, lines: int = 60) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


#: Every permission the operators needed, over the whole session (see ``audit_operator_calls``).
OPERATOR_PERMISSIONS: set[audit.Permission] = set()


def audit_operator_calls(cluster: Cluster) -> None:
    """Fail if an operator called the API for anything its RBAC rules do not grant.

    The test server logs every request with its User-Agent; the operator's own client and kopf's
    are told apart from the tests' and the kubelet's. Skipped on a real cluster (no request log).
    """
    if cluster.real or not cluster.api_url:
        return
    with urllib.request.urlopen(cluster.api_url + "/_test/requests", timeout=10) as answer:
        items = json.loads(answer.read())["items"]
    ours = [r for r in items if r["userAgent"].startswith((OPERATOR_USER_AGENT, "kopf/"))]
    used = audit.permissions(ours)
    OPERATOR_PERMISSIONS.update(used)
    chart = chart_rules()
    allowed = audit.granted([*chart["namespaced"], *chart["peering"], *chart["clusterPeering"]])
    assert used <= allowed, (
        f"the operator called the API beyond the chart's RBAC rules: {sorted(used - allowed)}"
    )


def chart_rules() -> dict[str, list[dict[str, Any]]]:
    """The rules the chart grants (its ``files/rbac-rules.yaml``, generated from ``rbac.py``)."""
    path = REPO / "charts" / "backtest-kit-operator" / "files" / "rbac-rules.yaml"
    return dict(yaml.safe_load(path.read_text()))


#: Granted though no e2e test makes the call: the OwnerReferencesPermissionEnforcement admission
#: plugin checks ``*/finalizers`` update (no request is ever sent), and a finished Walker's report
#: ConfigMap is read only when a later event re-syncs it.
NOT_CALLED_BY_THE_SUITE = {
    ("backtestkit.dev", "livetraders/finalizers", "update"),
    ("backtestkit.dev", "walkers/finalizers", "update"),
    ("", "configmaps", "get"),
}


def _whole_suite(session: pytest.Session) -> bool:
    option = session.config.option
    if getattr(option, "keyword", "") or getattr(option, "markexpr", ""):
        return False
    ran = {Path(str(item.fspath)).name for item in session.items}
    return {p.name for p in Path(__file__).parent.glob("test_*.py")} <= ran


def pytest_sessionfinish(session: pytest.Session) -> None:
    """After the whole e2e suite: every granted namespaced permission was needed (rules are exact)."""
    if not OPERATOR_PERMISSIONS:
        return
    allowed = audit.granted(chart_rules()["namespaced"])
    unused = sorted(allowed - OPERATOR_PERMISSIONS - NOT_CALLED_BY_THE_SUITE)
    print(
        f"\noperator RBAC audit: {len(OPERATOR_PERMISSIONS)} permissions used; granted but unused: {unused}"
    )
    if unused and _whole_suite(session) and session.testsfailed == 0:
        print("FAILED: the chart grants permissions the operator never needed over the whole e2e suite")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def rss_peak_kib(pid: int) -> int:
    """The peak resident set size (VmHWM) of a local process, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmHWM for pid {pid}")


@pytest.fixture
def operator_factory(cluster: Cluster, tmp_path: Path) -> Iterator[Callable[..., OperatorProcess]]:
    """Start more operators (or one with other settings): ``make(env={...}, args=[...])``."""
    started: list[OperatorProcess] = []

    def make(*, env: dict[str, str] | None = None, args: list[str] | None = None) -> OperatorProcess:
        process = OperatorProcess(
            cluster,
            tmp_path / f"operator-{len(started)}.log",
            extra_env=dict(env or {}),
            extra_args=list(args or []),
        )
        process.start()
        started.append(process)
        return process

    yield make
    for process in started:
        process.stop()
        print(f"--- {process.log_path.name} (tail) ---\n{process.log_tail()}")
    audit_operator_calls(cluster)


@pytest.fixture
def operator(cluster: Cluster, tmp_path: Path) -> Iterator[OperatorProcess]:
    process = OperatorProcess(cluster, tmp_path / "operator.log")
    process.start()
    yield process
    process.stop()
    print(f"--- operator log (tail) ---\n{process.log_tail()}")
    audit_operator_calls(cluster)


@dataclass
class PodRecorder:
    """Records every state a set of pods passes through (a watch in a thread), so short-lived
    states such as "Succeeded just before deletion" cannot be missed by polling."""

    cluster: Cluster
    selector: str
    seen: list[dict[str, Any]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> PodRecorder:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        watcher = kubernetes.watch.Watch()
        while not self._stop.is_set():
            try:
                for event in watcher.stream(
                    self.cluster.core.list_namespaced_pod,
                    self.cluster.namespace,
                    label_selector=self.selector,
                    timeout_seconds=2,
                ):
                    pod = event["object"]
                    terminated = None
                    for status in pod.status.container_statuses or []:
                        if status.state and status.state.terminated:
                            terminated = status.state.terminated.exit_code
                    self.seen.append(
                        {
                            "type": event["type"],
                            "name": pod.metadata.name,
                            "uid": pod.metadata.uid,
                            "phase": pod.status.phase,
                            "exitCode": terminated,
                        }
                    )
                    if self._stop.is_set():
                        break
            except Exception:  # the watch is best effort; retry until stopped
                time.sleep(0.2)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def phases(self) -> list[str]:
        return [str(s["phase"]) for s in self.seen]


@pytest.fixture
def pod_recorder(cluster: Cluster) -> Iterator[Callable[[str], PodRecorder]]:
    recorders: list[PodRecorder] = []

    def make(selector: str) -> PodRecorder:
        recorder = PodRecorder(cluster, selector).start()
        recorders.append(recorder)
        return recorder

    yield make
    for recorder in recorders:
        recorder.stop()


def wait_for(
    what: str,
    probe: Callable[[], Any],
    *,
    timeout: float = 60,
    interval: float = 0.2,
    operator: OperatorProcess | None = None,
) -> Any:
    """Poll ``probe`` until it returns something truthy; fail with the last value otherwise."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    tail = f"\n--- operator log ---\n{operator.log_tail()}" if operator else ""
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value: {last!r}{tail}")
