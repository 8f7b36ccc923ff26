"""Node registration and heartbeats of the local kubelet, as a real kubelet does them.

A pod bound to a node that has no ``v1/Node`` object is deleted by the pod garbage collector of a
real cluster (kube-controller-manager, after ~40 s), and the pods of a node whose heartbeats stop are
evicted by the node lifecycle controller.  So, before it binds anything, the local kubelet:

* creates its Node (or adopts an existing one of that name, making sure it carries the labels and
  the taint below), with labels ``kubernetes.io/hostname``, ``kubernetes.io/os``,
  ``kubernetes.io/arch`` and ``backtestkit.dev/local-kubelet: "true"``, the taint
  ``backtestkit.dev/local-kubelet=true:NoSchedule`` (a real scheduler places nothing else there; the
  kubelet binds its own pods explicitly through ``pods/binding``) and a status: Ready=True,
  MemoryPressure/DiskPressure/PIDPressure=False, ``nodeInfo``, ``addresses`` (InternalIP 127.0.0.1,
  Hostname), capacity/allocatable of this host;
* renews the ``coordination.k8s.io/v1`` Lease ``kube-node-lease/<node>`` (owned by the Node, so it
  goes with it) every ``lease_period`` seconds (10, like the kubelet's default);
* re-posts the node conditions with a fresh ``lastHeartbeatTime`` every ``status_period`` seconds
  (re-creating the Node if someone deleted it);
* on stop, deletes the Node (and its Lease) only if it created the Node, unless told to keep it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import platform
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .client import KubeClient, KubeError

log = logging.getLogger(__name__)

LOCAL_LABEL = "backtestkit.dev/local-kubelet"
LOCAL_TAINT = {"key": LOCAL_LABEL, "value": "true", "effect": "NoSchedule"}
LEASE_NAMESPACE = "kube-node-lease"
LOCAL_IP = "127.0.0.1"
STRATEGIC = "application/strategic-merge-patch+json"
CONDITIONS = (
    ("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
    ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
    ("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
    ("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
)
_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_micro() -> str:
    """A ``MicroTime`` (Lease ``renewTime``)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def node_path(name: str, sub: str = "") -> str:
    return f"/api/v1/nodes/{name}" + (f"/{sub}" if sub else "")


def lease_path(name: str = "") -> str:
    base = f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NAMESPACE}/leases"
    return f"{base}/{name}" if name else base


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def _os_image() -> str:
    for line in _read("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip('"')
    return platform.platform()


def _memory_kib() -> int:
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1])
    with contextlib.suppress(ValueError, OSError, AttributeError):
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 1024
    return 0


def host_resources(root: Path) -> dict[str, str]:
    """This host's capacity as a node reports it (cpu, memory, ephemeral-storage, pods)."""
    disk = shutil.disk_usage(root if root.exists() else Path.cwd())
    return {
        "cpu": str(os.cpu_count() or 1),
        "memory": f"{_memory_kib()}Ki",
        "ephemeral-storage": f"{disk.total // 1024}Ki",
        "pods": "110",
    }


def arch() -> str:
    machine = platform.machine().lower()
    return _ARCH.get(machine, machine or "amd64")


class NodeRegistration:
    """The Node and node Lease of one local kubelet; ``register()``, ``heartbeat()``, ``unregister()``."""

    def __init__(
        self,
        client: KubeClient,
        name: str,
        *,
        root: Path,
        labels: dict[str, str] | None = None,
        lease_period: float = 10.0,
        lease_duration: int = 40,
        status_period: float = 30.0,
        delete_on_stop: bool = True,
    ) -> None:
        self.client = client
        self.name = name
        self.root = root
        self.extra_labels = dict(labels or {})
        self.lease_period = lease_period
        self.lease_duration = lease_duration
        self.status_period = status_period
        self.delete_on_stop = delete_on_stop
        self.created = False  # this kubelet created the Node (so it may delete it)
        self.uid = ""
        self.kubelet_version = "v0.0.0-local"
        self.heartbeats = 0  # status heartbeats posted (tests)
        self.renewals = 0  # lease renewals (tests)

    # ------------------------------------------------------------ the objects

    def labels(self) -> dict[str, str]:
        return {
            "kubernetes.io/hostname": self.name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": arch(),
            LOCAL_LABEL: "true",
            **self.extra_labels,
        }

    def status(self, current: dict[str, Any] | None = None) -> dict[str, Any]:
        """The status to post; unchanged conditions keep their ``lastTransitionTime``."""
        previous = {c.get("type"): c for c in ((current or {}).get("status") or {}).get("conditions") or []}
        stamp = now_iso()
        conditions = []
        for kind, value, reason, message in CONDITIONS:
            old = previous.get(kind) or {}
            conditions.append(
                {
                    "type": kind,
                    "status": value,
                    "lastHeartbeatTime": stamp,
                    "lastTransitionTime": old.get("lastTransitionTime", stamp)
                    if old.get("status") == value
                    else stamp,
                    "reason": reason,
                    "message": message,
                }
            )
        resources = host_resources(self.root)
        return {
            "capacity": resources,
            "allocatable": dict(resources),
            "conditions": conditions,
            "addresses": [
                {"type": "InternalIP", "address": LOCAL_IP},
                {"type": "Hostname", "address": self.name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
            "nodeInfo": {
                "machineID": _read("/etc/machine-id"),
                "systemUUID": _read("/sys/class/dmi/id/product_uuid"),
                "bootID": _read("/proc/sys/kernel/random/boot_id"),
                "kernelVersion": platform.release(),
                "osImage": _os_image(),
                "containerRuntimeVersion": f"local-process://python-{platform.python_version()}",
                "kubeletVersion": self.kubelet_version,
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": arch(),
            },
        }

    def manifest(self) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.name,
                "labels": self.labels(),
                "annotations": {"node.alpha.kubernetes.io/ttl": "0"},
            },
            "spec": {"taints": [dict(LOCAL_TAINT)]},
            "status": self.status(),
        }

    # ------------------------------------------------------------ lifecycle

    async def register(self) -> dict[str, Any]:
        """Create the Node, or adopt the existing one; post its status and take the node Lease."""
        with contextlib.suppress(KubeError, KeyError, TypeError):
            version = await self.client.get("/version")
            self.kubelet_version = str(version["gitVersion"])
        try:
            node = await self.client.request("POST", "/api/v1/nodes", body=self.manifest())
            self.created = True
            log.info("registered node %s", self.name)
        except KubeError as exc:
            if exc.status != 409:
                raise
            node = await self._adopt()
        self.uid = node["metadata"]["uid"]
        # kube-apiserver keeps the status posted with a Node (the kubelet registers that way), but a
        # server that dropped it, or an adopted node, gets it through the status subresource.
        node = await self.post_status(node)
        await self.renew_lease()
        return node

    async def _adopt(self) -> dict[str, Any]:
        node: dict[str, Any] = await self.client.get(node_path(self.name))
        meta, spec = node["metadata"], node.get("spec") or {}
        patch: dict[str, Any] = {}
        labels = self.labels()
        if any((meta.get("labels") or {}).get(k) != v for k, v in labels.items()):
            patch["metadata"] = {"labels": labels}
        taints = spec.get("taints") or []
        if not any(
            t.get("key") == LOCAL_TAINT["key"] and t.get("effect") == LOCAL_TAINT["effect"] for t in taints
        ):
            patch["spec"] = {"taints": [*taints, dict(LOCAL_TAINT)]}
        if patch:
            node = await self.client.request(
                "PATCH", node_path(self.name), body=patch, content_type="application/merge-patch+json"
            )
        log.info("adopted existing node %s", self.name)
        return node

    async def post_status(self, current: dict[str, Any] | None = None) -> dict[str, Any]:
        if current is None:
            current = await self.client.get(node_path(self.name))
        node: dict[str, Any] = await self.client.request(
            "PATCH",
            node_path(self.name, "status"),
            body={"status": self.status(current)},
            content_type=STRATEGIC,
        )
        self.heartbeats += 1
        return node

    def lease(self) -> dict[str, Any]:
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": self.name,
                "namespace": LEASE_NAMESPACE,
                "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": self.name, "uid": self.uid}],
            },
            "spec": {
                "holderIdentity": self.name,
                "leaseDurationSeconds": self.lease_duration,
                "renewTime": now_micro(),
            },
        }

    async def renew_lease(self) -> None:
        """Merge-patch ``renewTime`` (and the owner reference) into the Lease; create it when missing."""
        lease = self.lease()
        patch = {"metadata": {"ownerReferences": lease["metadata"]["ownerReferences"]}, "spec": lease["spec"]}
        try:
            await self.client.merge_patch(lease_path(self.name), patch)
        except KubeError as exc:
            if exc.status != 404:
                raise
            await self.client.request("POST", lease_path(), body=lease)
        self.renewals += 1

    async def heartbeat(self) -> None:
        """Renew the Lease every ``lease_period`` s and post the conditions every ``status_period`` s."""
        loop = asyncio.get_running_loop()
        next_lease, next_status = loop.time() + self.lease_period, loop.time() + self.status_period
        while True:
            await asyncio.sleep(max(0.0, min(next_lease, next_status) - loop.time()))
            now = loop.time()
            try:
                if now >= next_status:
                    next_status = now + self.status_period
                    try:
                        await self.post_status()
                    except KubeError as exc:
                        if exc.status != 404:
                            raise
                        log.warning("node %s disappeared, registering it again", self.name)
                        await self.register()
                if now >= next_lease:
                    next_lease = now + self.lease_period
                    await self.renew_lease()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("node %s heartbeat failed: %r", self.name, exc)

    async def unregister(self) -> None:
        """Delete the Node and its Lease if this kubelet created the Node and ``delete_on_stop``."""
        if not (self.created and self.delete_on_stop):
            return
        with contextlib.suppress(KubeError):
            await self.client.request(
                "DELETE", node_path(self.name), body={"preconditions": {"uid": self.uid}}
            )
        # the garbage collector would remove the Lease (owned by the Node); do not leave it to chance
        with contextlib.suppress(KubeError):
            await self.client.request("DELETE", lease_path(self.name))
        log.info("removed node %s", self.name)
