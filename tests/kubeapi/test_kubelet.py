"""The local kubelet: pods become processes with kubelet-like status, restarts, ports, volumes, deletion."""

from __future__ import annotations

import signal
import textwrap
import time
from collections.abc import Callable
from typing import Any

import pytest
import requests
from kubernetes import client

from .conftest import Api
from .fixtures import KubeAPI
from .kubelet import (
    LOG_ANNOTATION,
    PORT_ANNOTATION,
    PORTS_ANNOTATION,
    LocalKubelet,
    expand_vars,
    rewrite_paths,
)
from .server import wait_until


def python_pod(name: str, code: str, restart: str = "Never", **extra: Any) -> dict[str, Any]:
    container = {
        "name": "main",
        "image": "backtest-kit:test",
        "command": ["python", "-c", textwrap.dedent(code)],
    }
    container.update(extra.pop("container", {}))
    return {
        "metadata": {"name": name, **extra.pop("metadata", {})},
        "spec": {"restartPolicy": restart, "containers": [container], **extra},
    }


def wait_phase(core: Api, name: str, *phases: str, timeout: float = 10) -> Any:
    def check() -> Any:
        pod = core.read_namespaced_pod(name, "default")
        return pod if pod.status.phase in phases else None

    return wait_until(check, timeout=timeout)


class TestRunningPods:
    def test_a_trivial_pod_runs_to_succeeded_with_a_termination_message(
        self, core: Api, kubelet: LocalKubelet
    ) -> None:
        code = """
            import os
            print("hello from", os.environ["POD_NAME"], os.environ["POD_NS"], os.environ["POD_IP"])
            with open("/dev/termination-log", "w") as fh:
                fh.write('{"result": 42}')
        """
        env = [
            {"name": n, "valueFrom": {"fieldRef": {"fieldPath": p}}}
            for n, p in (
                ("POD_NAME", "metadata.name"),
                ("POD_NS", "metadata.namespace"),
                ("POD_IP", "status.podIP"),
            )
        ]
        core.create_namespaced_pod("default", python_pod("ok", code, container={"env": env}))
        pod = wait_phase(core, "ok", "Succeeded", "Failed")
        assert pod.status.phase == "Succeeded" and pod.spec.node_name == "local-kubelet"
        state = pod.status.container_statuses[0].state.terminated
        assert (state.exit_code, state.reason, state.message) == (0, "Completed", '{"result": 42}')
        assert pod.status.pod_ip == "127.0.0.1"
        assert core.read_namespaced_pod_log("ok", "default") == "hello from ok default 127.0.0.1\n"
        assert kubelet.pod_log("default", "ok").startswith("hello from ok")

    def test_a_failing_pod_with_restart_never_ends_failed(self, core: Api, kubelet: LocalKubelet) -> None:
        core.create_namespaced_pod(
            "default",
            python_pod(
                "bad",
                "import sys; print('boom'); sys.exit(3)",
                container={"terminationMessagePolicy": "FallbackToLogsOnError"},
            ),
        )
        pod = wait_phase(core, "bad", "Failed")
        state = pod.status.container_statuses[0].state.terminated
        assert (state.exit_code, state.reason, state.message) == (3, "Error", "boom")
        assert pod.status.container_statuses[0].restart_count == 0

    def test_a_crashing_pod_is_restarted_with_restart_policy_always(
        self, core: Api, kubelet: LocalKubelet
    ) -> None:
        core.create_namespaced_pod(
            "default", python_pod("crash", "import sys; sys.exit(1)", restart="Always")
        )

        def restarted() -> Any:
            cs = core.read_namespaced_pod("crash", "default").status.container_statuses
            return cs[0] if cs and cs[0].restart_count >= 2 else None

        status = wait_until(restarted, timeout=10)
        assert status.last_state.terminated.exit_code == 1
        assert core.read_namespaced_pod("crash", "default").status.phase == "Running"

    def test_on_failure_restarts_until_success(self, core: Api, kubelet: LocalKubelet) -> None:
        code = """
            import os, sys
            marker = os.path.join(os.getcwd(), "attempted")
            if not os.path.exists(marker):
                open(marker, "w").close()
                sys.exit(2)
        """
        core.create_namespaced_pod("default", python_pod("flaky", code, restart="OnFailure"))
        pod = wait_phase(core, "flaky", "Succeeded")
        assert pod.status.container_statuses[0].restart_count == 1

    def test_kill_pod_process_simulates_a_crash(self, core: Api, kubelet: LocalKubelet) -> None:
        core.create_namespaced_pod(
            "default", python_pod("sleeper", "import time; time.sleep(60)", restart="Always")
        )
        wait_phase(core, "sleeper", "Running")
        wait_until(lambda: kubelet.kill_pod_process("default", "sleeper", signal.SIGKILL), timeout=5)

        def restarted() -> Any:
            cs = core.read_namespaced_pod("sleeper", "default").status.container_statuses[0]
            return cs if cs.restart_count == 1 and cs.state.running else None

        status = wait_until(restarted, timeout=10)
        assert status.last_state.terminated.exit_code == 137


class TestPortsAndProbes:
    def test_container_ports_get_local_ports_and_readiness_follows_the_http_probe(
        self, core: Api, kubelet: LocalKubelet
    ) -> None:
        code = """
            import os, time, http.server
            time.sleep(0.5)
            port = int(os.environ["BACKTEST_KIT_HTTP_PORT"])
            class H(http.server.BaseHTTPRequestHandler):
                def do_GET(self):
                    self.send_response(200 if self.path == "/readyz" else 404)
                    self.end_headers()
                    self.wfile.write(b"ok")
                def log_message(self, *a):
                    pass
            http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
        """
        probe = {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 1}
        core.create_namespaced_pod(
            "default",
            python_pod(
                "web",
                code,
                restart="Always",
                container={"ports": [{"name": "http", "containerPort": 8080}], "readinessProbe": probe},
            ),
        )
        pod = wait_phase(core, "web", "Running")
        assert (
            pod.status.container_statuses[0].ready is False or pod.status.container_statuses[0].ready is True
        )

        def ready() -> Any:
            p = core.read_namespaced_pod("web", "default")
            return p if p.status.container_statuses[0].ready else None

        pod = wait_until(ready, timeout=10)
        port = int(pod.metadata.annotations[PORT_ANNOTATION])
        assert port == kubelet.local_port("default", "web") == kubelet.local_port("default", "web", 8080)
        assert f'"8080": {port}' in pod.metadata.annotations[PORTS_ANNOTATION]
        assert {c.type: c.status for c in pod.status.conditions}["Ready"] == "True"
        assert requests.get(f"http://{pod.status.pod_ip}:{port}/readyz", timeout=2).status_code == 200
        assert pod.metadata.annotations[LOG_ANNOTATION]


class TestLiveness:
    def test_a_failing_liveness_probe_restarts_the_container(
        self, api: KubeAPI, core: Api, local_kubelet_factory: Callable[..., LocalKubelet]
    ) -> None:
        local_kubelet_factory(api, liveness_time_scale=0.1)
        probe = {
            "exec": {"command": ["python", "-c", "raise SystemExit(1)"]},
            "periodSeconds": 1,
            "failureThreshold": 2,
        }
        core.create_namespaced_pod(
            "default",
            python_pod(
                "unhealthy",
                "import time; time.sleep(60)",
                restart="Always",
                container={"livenessProbe": probe},
                terminationGracePeriodSeconds=1,
            ),
        )

        def restarted() -> Any:
            cs = core.read_namespaced_pod("unhealthy", "default").status.container_statuses
            return cs[0] if cs and cs[0].restart_count >= 1 else None

        status = wait_until(restarted, timeout=10)
        assert status.last_state.terminated.exit_code == 143


class TestVolumes:
    def test_pvc_data_survives_pod_replacement_but_not_claim_replacement(
        self, core: Api, kubelet: LocalKubelet
    ) -> None:
        core.create_namespaced_persistent_volume_claim(
            "default",
            {
                "metadata": {"name": "state"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
            },
        )
        core.create_namespaced_config_map(
            "default", {"metadata": {"name": "cfg"}, "data": {"greeting": "hi"}}
        )
        code = """
            import os, sys
            state = sys.argv[1]
            count = int(open(state + "/n").read()) if os.path.exists(state + "/n") else 0
            open(state + "/n", "w").write(str(count + 1))
            greeting = open("/etc/cfg/greeting").read()
            open(os.environ["OUT"], "w").write(f"{greeting}:{count + 1}:{os.environ['SCRATCH_EXISTS']}")
        """
        spec: dict[str, Any] = {
            "volumes": [
                {"name": "state", "persistentVolumeClaim": {"claimName": "state"}},
                {"name": "cfg", "configMap": {"name": "cfg"}},
                {"name": "tmp", "emptyDir": {}},
            ]
        }
        container = {
            "args": ["/var/lib/backtest-kit"],
            "env": [
                {"name": "OUT", "value": "/dev/termination-log"},
                {"name": "SCRATCH", "value": "/scratch"},
                {"name": "SCRATCH_EXISTS", "value": "$(SCRATCH)"},
            ],
            "volumeMounts": [
                {"name": "state", "mountPath": "/var/lib/backtest-kit"},
                {"name": "cfg", "mountPath": "/etc/cfg"},
                {"name": "tmp", "mountPath": "/scratch"},
            ],
        }
        for attempt in (1, 2):
            name = f"user-{attempt}"
            core.create_namespaced_pod("default", python_pod(name, code, container=container, **spec))
            pod = wait_phase(core, name, "Succeeded", "Failed")
            message = pod.status.container_statuses[0].state.terminated.message
            assert message.startswith(f"hi:{attempt}:"), kubelet.pod_log("default", name)
            assert message.endswith("/volumes/tmp")
            core.delete_namespaced_pod(name, "default")
        assert (kubelet.pvc_dir("default", "state") / "n").read_text() == "2"
        assert core.read_namespaced_persistent_volume_claim("state", "default").status.phase == "Bound"
        core.delete_namespaced_persistent_volume_claim("state", "default")
        wait_until(lambda: not core.list_namespaced_persistent_volume_claim("default").items, timeout=5)
        core.create_namespaced_persistent_volume_claim(
            "default",
            {
                "metadata": {"name": "state"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
            },
        )
        core.create_namespaced_pod("default", python_pod("user-3", code, container=container, **spec))
        pod = wait_phase(core, "user-3", "Succeeded", "Failed")
        assert pod.status.container_statuses[0].state.terminated.message.startswith("hi:1:")


class TestDeletion:
    def test_deleting_a_running_pod_sends_sigterm_then_removes_it(
        self, core: Api, kubelet: LocalKubelet
    ) -> None:
        code = """
            import signal, sys, time
            def term(*_):
                print("got SIGTERM", flush=True)
                sys.exit(143)
            signal.signal(signal.SIGTERM, term)
            print("started", flush=True)
            time.sleep(60)
        """
        core.create_namespaced_pod(
            "default", python_pod("victim", code, restart="Always", terminationGracePeriodSeconds=5)
        )
        wait_until(lambda: "started" in kubelet.pod_log("default", "victim"), timeout=10)
        started = time.monotonic()
        core.delete_namespaced_pod("victim", "default")
        pod = core.read_namespaced_pod("victim", "default")
        assert pod.metadata.deletion_timestamp is not None

        def deleted() -> bool:
            try:
                core.read_namespaced_pod("victim", "default")
            except client.ApiException as exc:
                return bool(exc.status == 404)
            return False

        wait_until(deleted, timeout=10)
        assert time.monotonic() - started < 4
        assert "got SIGTERM" in kubelet.pod_log("default", "victim")

    def test_a_pod_ignoring_sigterm_is_killed_after_the_grace_period(
        self, core: Api, kubelet: LocalKubelet
    ) -> None:
        code = """
            import signal, time
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            print("started", flush=True)
            time.sleep(60)
        """
        core.create_namespaced_pod("default", python_pod("stubborn", code, terminationGracePeriodSeconds=1))
        wait_until(lambda: "started" in kubelet.pod_log("default", "stubborn"), timeout=10)
        started = time.monotonic()
        core.delete_namespaced_pod("stubborn", "default")

        def deleted() -> bool:
            return not [p for p in core.list_namespaced_pod("default").items if p.metadata.name == "stubborn"]

        wait_until(deleted, timeout=10)
        assert 0.9 < time.monotonic() - started < 5


class TestHelpers:
    def test_var_expansion_follows_kubernetes_rules(self) -> None:
        env = {"A": "1"}
        assert expand_vars("$(A)-$(B)-$$(A)", env) == "1-$(B)-$(A)"

    def test_path_rewriting_only_touches_whole_path_prefixes(self) -> None:
        mounts = {"/data": "/tmp/x", "/dev/termination-log": "/tmp/t"}
        assert rewrite_paths("--state-dir=/data/sub", mounts) == "--state-dir=/tmp/x/sub"
        assert rewrite_paths("/database /data", mounts) == "/database /tmp/x"
        assert rewrite_paths("/dev/termination-log", mounts) == "/tmp/t"

    def test_helpers_on_unknown_pods(self, kubelet: LocalKubelet) -> None:
        assert kubelet.pod_log("default", "nope") == ""
        assert kubelet.kill_pod_process("default", "nope") is False
        with pytest.raises(KeyError):
            kubelet.local_port("default", "nope")


class TestQosClass:
    def test_a_pod_with_requests_runs_and_keeps_the_burstable_class_the_server_gave_it(
        self, core: Api, kubelet: LocalKubelet
    ) -> None:
        resources = {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "64Mi"}}
        body = python_pod("qos", "print('ok')", container={"resources": resources})
        assert core.create_namespaced_pod("default", body).status.qos_class == "Burstable"
        pod = wait_phase(core, "qos", "Succeeded", timeout=20)
        assert pod.status.qos_class == "Burstable"
