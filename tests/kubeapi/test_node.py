"""Nodes: the fake server serves them, and the local kubelet registers, heartbeats and removes its own."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from .conftest import Api
from .fixtures import TEST_CRDS, KubeAPI
from .kubeconfig import write_kubeconfig
from .kubelet import LocalKubelet
from .node import LEASE_NAMESPACE, LOCAL_LABEL
from .rawhttp import Http
from .server import wait_until

NODES = "/api/v1/nodes"
TAINT = {"key": LOCAL_LABEL, "value": "true", "effect": "NoSchedule"}


def node_body(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}, "spec": spec}


def pod_body(name: str, node: str | None = None, code: str = "import time; time.sleep(60)") -> dict[str, Any]:
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "containers": [{"name": "main", "image": "backtest-kit:test", "command": ["python", "-c", code]}],
    }
    if node:
        spec["nodeName"] = node
    return {"metadata": {"name": name}, "spec": spec}


def read_node(http: Http, name: str) -> dict[str, Any] | None:
    code, body = http.call("GET", f"{NODES}/{name}")
    return body if code == 200 else None


def lease_of(http: Http, name: str) -> dict[str, Any] | None:
    code, body = http.call("GET", f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NAMESPACE}/leases/{name}")
    return body if code == 200 else None


def conditions(node: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in node["status"]["conditions"]}


class TestNodesOnTheServer:
    def test_nodes_and_their_status_subresource_are_cluster_scoped_in_discovery(self, api: KubeAPI) -> None:
        res = {r["name"]: r for r in Http(api.url).call("GET", "/api/v1")[1]["resources"]}
        assert res["nodes"]["kind"] == "Node" and res["nodes"]["namespaced"] is False
        assert "no" in res["nodes"]["shortNames"] and "watch" in res["nodes"]["verbs"]
        assert res["nodes/status"]["namespaced"] is False and "patch" in res["nodes/status"]["verbs"]

    def test_a_node_is_created_read_listed_by_field_selector_and_deleted(self, core: Api) -> None:
        core.create_node(node_body("n1"))
        core.create_node(node_body("n2", unschedulable=True))
        assert core.read_node("n1").metadata.uid
        names = [n.metadata.name for n in core.list_node(field_selector="spec.unschedulable=true").items]
        assert names == ["n2"]
        core.delete_node("n1")
        with pytest.raises(client.ApiException) as err:
            core.read_node("n1")
        assert err.value.status == 404

    def test_a_node_has_no_namespaced_path(self, api: KubeAPI) -> None:
        http = Http(api.url)
        assert http.call("POST", NODES, node_body("n1"))[0] == 201
        assert http.call("GET", "/api/v1/namespaces/default/nodes/n1")[0] == 404

    def test_main_resource_writes_keep_the_status_and_status_writes_keep_the_spec(self, api: KubeAPI) -> None:
        http = Http(api.url)
        body = node_body("n1")
        body["status"] = {"conditions": [{"type": "Ready", "status": "True"}]}
        assert http.call("POST", NODES, body)[1]["status"]["conditions"][0]["status"] == "True"
        patched = http.call(
            "PATCH",
            f"{NODES}/n1",
            {"spec": {"unschedulable": True}, "status": {"conditions": []}},
            "application/merge-patch+json",
        )[1]
        assert (
            patched["spec"]["unschedulable"] is True and patched["status"]["conditions"][0]["type"] == "Ready"
        )
        patched = http.call(
            "PATCH",
            f"{NODES}/n1/status",
            {
                "spec": {"unschedulable": False},
                "status": {"conditions": [{"type": "Ready", "status": "False"}]},
            },
            "application/strategic-merge-patch+json",
        )[1]
        assert (
            patched["spec"]["unschedulable"] is True
            and patched["status"]["conditions"][0]["status"] == "False"
        )

    def test_a_watch_on_nodes_sees_them_come_and_go(self, api: KubeAPI) -> None:
        http = Http(api.url)
        rv = http.call("GET", NODES)[1]["metadata"]["resourceVersion"]
        http.call("POST", NODES, node_body("n1"))
        http.call("DELETE", f"{NODES}/n1")
        events = http.stream(NODES, resourceVersion=rv, timeoutSeconds=1)
        assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
            ("ADDED", "n1"),
            ("DELETED", "n1"),
        ]

    def test_invalid_taints_are_rejected_with_field_paths(self, api: KubeAPI) -> None:
        bad = node_body("n1", taints=[{"key": "a", "effect": "Sometimes"}, {"effect": "NoSchedule"}])
        code, body = Http(api.url).call("POST", NODES, bad)
        assert code == 422 and body["reason"] == "Invalid"
        fields = {c["field"]: c["message"] for c in body["details"]["causes"]}
        assert fields["spec.taints[0].effect"].startswith('Unsupported value: "Sometimes"')
        assert fields["spec.taints[1].key"] == "Required value"

    def test_the_kube_node_lease_namespace_exists_from_the_start(self, core: Api) -> None:
        assert core.read_namespace(LEASE_NAMESPACE).status.phase == "Active"

    def test_binding_records_the_node_even_if_it_does_not_exist_but_checks_the_target_kind(
        self, api: KubeAPI
    ) -> None:
        http = Http(api.url)
        pods = "/api/v1/namespaces/default/pods"
        http.call("POST", pods, pod_body("p"))
        wrong = {"metadata": {"name": "p"}, "target": {"kind": "Pod", "name": "somewhere"}}
        code, body = http.call("POST", f"{pods}/p/binding", wrong)
        assert code == 422 and body["details"]["causes"][0]["field"] == "target.kind"
        right = {"metadata": {"name": "p"}, "target": {"kind": "Node", "name": "nowhere"}}
        assert http.call("POST", f"{pods}/p/binding", right)[0] == 201
        assert http.call("GET", f"{pods}/p")[1]["spec"]["nodeName"] == "nowhere"


class TestNodeRegistration:
    def test_the_kubelet_registers_a_ready_node_with_its_labels_taint_and_host_facts(
        self, api: KubeAPI, kubelet: LocalKubelet
    ) -> None:
        node = read_node(Http(api.url), "local-kubelet")
        assert node is not None
        labels = node["metadata"]["labels"]
        assert labels["kubernetes.io/hostname"] == "local-kubelet"
        assert labels["kubernetes.io/os"] == "linux" and labels[LOCAL_LABEL] == "true"
        assert node["spec"]["taints"] == [TAINT]
        conds = conditions(node)
        assert conds["Ready"]["status"] == "True" and conds["Ready"]["reason"] == "KubeletReady"
        assert conds["Ready"]["lastHeartbeatTime"] and conds["Ready"]["lastTransitionTime"]
        assert {conds[t]["status"] for t in ("MemoryPressure", "DiskPressure", "PIDPressure")} == {"False"}
        status = node["status"]
        assert {"type": "InternalIP", "address": "127.0.0.1"} in status["addresses"]
        assert {"type": "Hostname", "address": "local-kubelet"} in status["addresses"]
        assert status["nodeInfo"]["operatingSystem"] == "linux"
        assert status["nodeInfo"]["kubeletVersion"].startswith("v1.")
        for section in ("capacity", "allocatable"):
            assert set(status[section]) >= {"cpu", "memory", "pods", "ephemeral-storage"}

    def test_the_kubelet_holds_and_renews_its_lease_owned_by_the_node(
        self, api: KubeAPI, local_kubelet_factory: Callable[..., LocalKubelet]
    ) -> None:
        http = Http(api.url)
        local_kubelet_factory(api, lease_period=0.2)
        first = lease_of(http, "local-kubelet")
        assert first is not None
        assert first["spec"]["holderIdentity"] == "local-kubelet"
        assert first["spec"]["leaseDurationSeconds"] == 40
        owner = first["metadata"]["ownerReferences"][0]
        node = read_node(http, "local-kubelet")
        assert node is not None and (owner["kind"], owner["uid"]) == ("Node", node["metadata"]["uid"])
        wait_until(
            lambda: (
                (lease_of(http, "local-kubelet") or first)["spec"]["renewTime"] != first["spec"]["renewTime"]
            )
        )

    def test_the_kubelet_posts_fresh_heartbeats_in_the_node_conditions(
        self, api: KubeAPI, local_kubelet_factory: Callable[..., LocalKubelet]
    ) -> None:
        http = Http(api.url)
        local_kubelet_factory(api, node_status_period=0.3)
        first = read_node(http, "local-kubelet")
        assert first is not None
        beat = conditions(first)["Ready"]["lastHeartbeatTime"]

        def newer() -> dict[str, Any] | None:
            node = read_node(http, "local-kubelet")
            return node if node and conditions(node)["Ready"]["lastHeartbeatTime"] != beat else None

        node = wait_until(newer, timeout=5)
        ready = conditions(node)["Ready"]
        assert ready["status"] == "True"
        assert ready["lastTransitionTime"] == conditions(first)["Ready"]["lastTransitionTime"]

    def test_the_kubelet_removes_the_node_it_created_and_its_lease_on_stop(
        self, api: KubeAPI, local_kubelet_factory: Callable[..., LocalKubelet]
    ) -> None:
        http = Http(api.url)
        kubelet = local_kubelet_factory(api, node_name="worker-a")
        assert read_node(http, "worker-a") is not None and lease_of(http, "worker-a") is not None
        kubelet.stop()
        assert read_node(http, "worker-a") is None and lease_of(http, "worker-a") is None

    def test_delete_node_on_stop_false_keeps_the_created_node(
        self, api: KubeAPI, local_kubelet_factory: Callable[..., LocalKubelet]
    ) -> None:
        http = Http(api.url)
        local_kubelet_factory(api, delete_node_on_stop=False).stop()
        assert read_node(http, "local-kubelet") is not None

    def test_a_node_deleted_behind_its_back_is_registered_again(
        self, api: KubeAPI, local_kubelet_factory: Callable[..., LocalKubelet]
    ) -> None:
        http = Http(api.url)
        local_kubelet_factory(api, node_status_period=0.2)
        old = read_node(http, "local-kubelet")
        assert old is not None
        http.call("DELETE", f"{NODES}/local-kubelet")
        new = wait_until(lambda: read_node(http, "local-kubelet"), timeout=5)
        assert new["metadata"]["uid"] != old["metadata"]["uid"]

    def test_a_kubelet_that_cannot_register_fails_to_start_with_a_clear_error(self, tmp_path: Path) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", f"http://127.0.0.1:{port}")
        with pytest.raises(RuntimeError, match="could not start"):
            LocalKubelet(kubeconfig, root=tmp_path / "root").start(timeout=5)


class TestAdoptingAnExistingNode:
    def test_an_existing_node_is_adopted_made_ready_and_left_in_place_on_stop(
        self, api: KubeAPI, local_kubelet_factory: Callable[..., LocalKubelet]
    ) -> None:
        http = Http(api.url)
        existing = node_body(
            "local-kubelet", taints=[{"key": "dedicated", "value": "ci", "effect": "NoExecute"}]
        )
        existing["metadata"]["labels"] = {"team": "quant"}
        existing["status"] = {
            "conditions": [{"type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown"}]
        }
        uid = http.call("POST", NODES, existing)[1]["metadata"]["uid"]
        kubelet = local_kubelet_factory(api)
        node = read_node(http, "local-kubelet")
        assert node is not None and node["metadata"]["uid"] == uid
        assert (
            node["metadata"]["labels"]["team"] == "quant"
            and node["metadata"]["labels"][LOCAL_LABEL] == "true"
        )
        assert node["spec"]["taints"] == [existing["spec"]["taints"][0], TAINT]
        assert conditions(node)["Ready"]["status"] == "True"
        kubelet.stop()
        kept = read_node(http, "local-kubelet")
        assert kept is not None and kept["metadata"]["uid"] == uid


class TestPodsOnTheNode:
    def test_pods_it_runs_are_bound_to_its_registered_node(
        self, api: KubeAPI, core: Api, local_kubelet_factory: Callable[..., LocalKubelet]
    ) -> None:
        local_kubelet_factory(api, node_name="worker-b")
        core.create_namespaced_pod("default", pod_body("p", code="print('hi')"))
        pod = wait_until(
            lambda: (p := core.read_namespaced_pod("p", "default")).status.phase == "Succeeded" and p,
            timeout=10,
        )
        assert pod.spec.node_name == "worker-b"
        assert [c.status for c in pod.status.conditions if c.type == "PodScheduled"] == ["True"]
        assert core.read_node("worker-b").metadata.labels[LOCAL_LABEL] == "true"

    def test_with_the_pod_gc_on_its_pods_survive_and_pods_of_a_missing_node_are_deleted(
        self, kube_api_factory: Callable[..., KubeAPI], local_kubelet_factory: Callable[..., LocalKubelet]
    ) -> None:
        api = kube_api_factory([TEST_CRDS], orphan_pod_gc_after=0.3)
        core: Api = client.CoreV1Api(api.api_client())
        kubelet = local_kubelet_factory(api)
        core.create_namespaced_pod("default", pod_body("mine"))
        core.create_namespaced_pod("default", pod_body("stray", node="gone-node"))
        wait_until(lambda: core.read_namespaced_pod("mine", "default").status.phase == "Running")

        def stray_gone() -> bool:
            try:
                core.read_namespaced_pod("stray", "default")
            except client.ApiException as exc:
                return bool(exc.status == 404)
            return False

        wait_until(stray_gone, timeout=5)
        assert core.read_namespaced_pod("mine", "default").status.phase == "Running"
        kubelet.stop()  # the node goes, so do its pods

        def mine_gone() -> bool:
            return not [p for p in core.list_namespaced_pod("default").items if p.metadata.name == "mine"]

        wait_until(mine_gone, timeout=5)
