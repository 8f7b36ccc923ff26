"""A "local kubelet": runs pods as local processes and reports their status like a kubelet would.

There is no container runtime on the test machine, but the operator's behaviour depends on pods
actually starting, serving HTTP, crashing, restarting and terminating.  This component watches
pods through the API server (HTTP only, so it also works against a real cluster), binds the ones
it should run to its node, and runs the first container of each as a process on this host.

Its node: like a real kubelet it registers a ``v1/Node`` named ``node_name`` (created, or adopted
when it exists), tainted ``backtestkit.dev/local-kubelet=true:NoSchedule`` so no scheduler places
other workloads on it, renews the node Lease in ``kube-node-lease`` every ``lease_period`` seconds and
re-posts the Ready condition every ``node_status_period`` seconds; on stop it deletes the Node only
if it created it (``delete_node_on_stop``).  See :mod:`.node`.  Without a Node, a real cluster's pod
garbage collector deletes the pods bound to it.

Which pods it runs:
  * against the fake server (``require_label=False``, default): every pod that is unscheduled
    (``spec.nodeName`` empty) or already bound to this kubelet's node (``node_name``);
  * against a real cluster (``require_label=True``): only pods labelled
    ``backtestkit.dev/local-kubelet: "true"``, which it binds to ``node_name`` via ``pods/binding``.

How a container maps onto a process:
  * argv = ``command`` (or ``default_command`` when the image entrypoint is implied) + ``args``,
    with ``$(VAR)`` expansion; ``python``/``python3`` map to the running interpreter.
  * env: the host environment (``inherit_env``), then the container's ``env`` (values, ``$(VAR)``,
    ``valueFrom.fieldRef`` for metadata.name/namespace/uid/labels/annotations, spec.nodeName,
    spec.serviceAccountName, status.podIP/hostIP = 127.0.0.1, configMapKeyRef, secretKeyRef) and
    ``envFrom``; HOSTNAME is the pod name.
  * volumes: persistentVolumeClaim -> ``<root>/pvc/<namespace>/<claim>/<claim uid>`` (kept across
    pods, so state survives restarts; a re-created claim starts empty; the PVC is marked Bound),
    emptyDir -> a per-pod directory, configMap and secret -> files written from the object's data,
    hostPath -> the path itself.  A
    ``volumeMount`` is applied by rewriting every occurrence of its ``mountPath`` in argv, env values
    and workingDir to the local directory (``subPath`` appended).
  * termination message: ``terminationMessagePath`` (default /dev/termination-log) is rewritten to a
    per-pod file the same way, and ``termination_env`` (default ``BACKTEST_KIT_OUTPUT``) is set to it
    unless the container sets it; after exit its content (max 4 KiB) becomes
    ``state.terminated.message`` (``FallbackToLogsOnError`` uses the log tail).
  * ports: each ``containerPort`` gets a free local port.  ``port_env`` (default
    ``BACKTEST_KIT_HTTP_PORT``) is set to the port named ``http`` (else the first one).  The pod is
    annotated ``backtestkit.dev/local-port: "<port>"`` (that same port) and
    ``backtestkit.dev/local-ports: {"8080": 43121, "http": 43121}`` before it turns Running;
    ``status.podIP`` is 127.0.0.1.  Clients reach a pod at podIP + the annotation port when
    present, else podIP + containerPort (what they would do in a cluster).
  * logs go to a per-pod file, served by the fake server at ``pods/<name>/log`` (the pod carries
    ``backtestkit.dev/local-log-path``) and by :meth:`LocalKubelet.pod_log`.

Status: Pending (ContainerCreating) -> Running (``ready`` from a readinessProbe: httpGet, tcpSocket
or exec; ready at once without one) -> Succeeded/Failed with ``state.terminated`` (exitCode,
reason Completed/Error, message, startedAt/finishedAt).  ``restartPolicy`` Always/OnFailure restarts
the process (restartCount++, ``waiting: CrashLoopBackOff`` and ``lastState`` in between, with a
short backoff); Never leaves it terminated.  A failing livenessProbe (real timings, times
``liveness_time_scale``) gets the container killed (SIGTERM, grace, SIGKILL) and then restarted per
``restartPolicy``.  Readiness probes run at most every ``probe_period_cap`` seconds so tests stay
fast.  Startup probes are not run.

Deletion: the fake server, like the real one, only marks a bound pod (deletionTimestamp +
deletionGracePeriodSeconds).  The kubelet sends SIGTERM, waits up to the grace period, SIGKILLs the
process group, reports the terminated state and then confirms with ``DELETE gracePeriodSeconds=0``
(uid precondition), which removes the object.

Jobs (``run_jobs=True``): see :mod:`.jobs`; leave it off against a real cluster, which has its own
Job controller.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Coroutine, Mapping, Sequence
from concurrent.futures import Future
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from .client import KubeClient, KubeError, informer
from .node import LOCAL_LABEL, NodeRegistration
from .qos import qos_class

log = logging.getLogger(__name__)

PORT_ANNOTATION = "backtestkit.dev/local-port"
PORTS_ANNOTATION = "backtestkit.dev/local-ports"
LOG_ANNOTATION = "backtestkit.dev/local-log-path"
LOCAL_IP = "127.0.0.1"
MAX_MESSAGE = 4096


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOCAL_IP, 0))
        return int(sock.getsockname()[1])


def expand_vars(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes ``$(VAR)`` expansion: defined vars are substituted, ``$$`` escapes, others stay."""

    def repl(m: re.Match[str]) -> str:
        if m.group(0).startswith("$$"):
            return m.group(0)[1:]
        name = m.group(1)
        return env.get(name, m.group(0))

    return re.sub(r"\$\$\([A-Za-z_][A-Za-z0-9_.-]*\)|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)", repl, text)


def rewrite_paths(text: str, mounts: Mapping[str, str]) -> str:
    """Replace container paths (mountPath, terminationMessagePath) by their local counterparts."""
    for container_path in sorted(mounts, key=len, reverse=True):
        pattern = r"(?<![\w./-])" + re.escape(container_path.rstrip("/")) + r"(?=$|[/\s:;,=\"'])"
        local = mounts[container_path].replace("\\", "\\\\")
        text = re.sub(pattern, local, text)
    return text


def pod_path(namespace: str, name: str, sub: str = "") -> str:
    return f"/api/v1/namespaces/{namespace}/pods/{name}{('/' + sub) if sub else ''}"


class PodWorker:
    """Runs one pod: prepares volumes and ports, runs/restarts the process, reports status."""

    def __init__(self, kubelet: LocalKubelet, pod: dict[str, Any]) -> None:
        self.kubelet = kubelet
        self.pod = pod
        meta = pod["metadata"]
        self.namespace: str = meta["namespace"]
        self.name: str = meta["name"]
        self.uid: str = meta["uid"]
        self.dir = kubelet.root / "pods" / f"{self.namespace}_{self.name}_{self.uid[:8]}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.dir / "container.log"
        self.termination_path = self.dir / "termination-log"
        self.proc: asyncio.subprocess.Process | None = None
        self.ports: dict[str, int] = {}
        self.restart_count = 0
        self.ready = False
        self.terminating = False
        self.started_at = ""
        self.last_state: dict[str, Any] = {}
        self.task: asyncio.Task[None] | None = None
        self.term_task: asyncio.Task[None] | None = None
        self.prober: asyncio.Task[None] | None = None
        self.liveness: asyncio.Task[None] | None = None
        self.container: dict[str, Any] = ((pod.get("spec") or {}).get("containers") or [{}])[0]

    # ---------------------------------------------------------------- status

    def _container_status(self, state: dict[str, Any]) -> dict[str, Any]:
        c = self.container
        status: dict[str, Any] = {
            "name": c.get("name", ""),
            "image": c.get("image", ""),
            "imageID": f"local://{c.get('image', '')}",
            "ready": self.ready and "running" in state,
            "started": "running" in state,
            "restartCount": self.restart_count,
            "state": state,
            "lastState": self.last_state,
        }
        if self.proc is not None:
            status["containerID"] = f"local://{self.proc.pid}"
        return status

    async def report(self, phase: str, state: dict[str, Any]) -> None:
        ready = self.ready and "running" in state
        t = now_iso()
        conditions = [
            {
                "type": "PodReadyToStartContainers",
                "status": "True",
                "lastTransitionTime": t,
                "lastProbeTime": None,
            },
            {"type": "Initialized", "status": "True", "lastTransitionTime": t, "lastProbeTime": None},
            {"type": "Ready", "status": str(ready), "lastTransitionTime": t, "lastProbeTime": None},
            {"type": "ContainersReady", "status": str(ready), "lastTransitionTime": t, "lastProbeTime": None},
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": t, "lastProbeTime": None},
        ]
        if not ready and phase in ("Pending", "Running"):
            for cond in conditions[2:4]:
                cond["reason"] = "ContainersNotReady"
                cond["message"] = f"containers with unready status: [{self.container.get('name', '')}]"
        status = {
            "phase": phase,
            "conditions": conditions,
            "hostIP": LOCAL_IP,
            "hostIPs": [{"ip": LOCAL_IP}],
            "podIP": LOCAL_IP,
            "podIPs": [{"ip": LOCAL_IP}],
            "startTime": (self.pod.get("status") or {}).get("startTime") or t,
            "containerStatuses": [self._container_status(state)],
            "qosClass": qos_class(self.pod.get("spec") or {}),  # what the API server computed
        }
        self.pod.setdefault("status", {})["startTime"] = status["startTime"]
        try:
            await self.kubelet.client.merge_patch(
                pod_path(self.namespace, self.name, "status"), {"status": status}
            )
        except KubeError as exc:
            if exc.status != 404:
                log.warning("status update of %s/%s failed: %s", self.namespace, self.name, exc)

    # ------------------------------------------------------------- preparation

    async def _wait_for(self, path: str, optional: bool = False) -> dict[str, Any] | None:
        while True:
            try:
                return dict(await self.kubelet.client.get(path))
            except KubeError as exc:
                if exc.status != 404:
                    raise
                if optional:
                    return None
            await asyncio.sleep(0.3)

    async def _volumes(self) -> dict[str, str]:
        """Local directory per pod volume name."""
        client = self.kubelet.client
        out: dict[str, str] = {}
        for vol in (self.pod.get("spec") or {}).get("volumes") or []:
            name = vol["name"]
            local = self.dir / "volumes" / name
            if "persistentVolumeClaim" in vol:
                claim = vol["persistentVolumeClaim"]["claimName"]
                cpath = f"/api/v1/namespaces/{self.namespace}/persistentvolumeclaims/{claim}"
                pvc = await self._wait_for(cpath)
                local = self.kubelet.pvc_dir(self.namespace, claim, (pvc or {})["metadata"]["uid"])
                if pvc and (pvc.get("status") or {}).get("phase") != "Bound":
                    requests = ((pvc.get("spec") or {}).get("resources") or {}).get("requests") or {}
                    with contextlib.suppress(KubeError):
                        await client.merge_patch(
                            cpath + "/status",
                            {
                                "status": {
                                    "phase": "Bound",
                                    "accessModes": (pvc.get("spec") or {}).get("accessModes") or [],
                                    "capacity": {"storage": requests.get("storage", "1Gi")},
                                }
                            },
                        )
            elif "configMap" in vol or "secret" in vol:
                is_cm = "configMap" in vol
                src = vol["configMap"] if is_cm else vol["secret"]
                ref = src.get("name") if is_cm else src.get("secretName")
                kind = "configmaps" if is_cm else "secrets"
                obj = await self._wait_for(
                    f"/api/v1/namespaces/{self.namespace}/{kind}/{ref}", bool(src.get("optional"))
                )
                local.mkdir(parents=True, exist_ok=True)
                data: dict[str, bytes] = {}
                for k, v in ((obj or {}).get("data") or {}).items():
                    data[k] = str(v).encode() if is_cm else base64.b64decode(v)
                for k, v in ((obj or {}).get("binaryData") or {}).items():
                    data[k] = base64.b64decode(v)
                items = src.get("items")
                mapping = {i["key"]: i["path"] for i in items} if items else {k: k for k in data}
                for key, rel in mapping.items():
                    if key in data:
                        target = local / rel
                        target.parent.mkdir(parents=True, exist_ok=True)
                        target.write_bytes(data[key])
            elif "hostPath" in vol:
                local = Path(vol["hostPath"]["path"])
            local.mkdir(parents=True, exist_ok=True)
            out[name] = str(local)
        return out

    async def _env_value(self, var: dict[str, Any], env: Mapping[str, str]) -> str | None:
        if "value" in var:
            return expand_vars(str(var["value"]), env)
        src = var.get("valueFrom") or {}
        meta = self.pod["metadata"]
        if "fieldRef" in src:
            path = src["fieldRef"].get("fieldPath", "")
            m = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
            if m:
                return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
            simple: dict[str, str] = {
                "metadata.name": meta["name"],
                "metadata.namespace": meta["namespace"],
                "metadata.uid": meta["uid"],
                "spec.nodeName": self.kubelet.node_name,
                "spec.serviceAccountName": str(
                    (self.pod.get("spec") or {}).get("serviceAccountName", "default")
                ),
                "status.podIP": LOCAL_IP,
                "status.hostIP": LOCAL_IP,
                "status.podIPs": LOCAL_IP,
            }
            return simple.get(path, "")
        for ref_key, kind in (("configMapKeyRef", "configmaps"), ("secretKeyRef", "secrets")):
            if ref_key in src:
                ref = src[ref_key]
                obj = await self._wait_for(
                    f"/api/v1/namespaces/{self.namespace}/{kind}/{ref['name']}", bool(ref.get("optional"))
                )
                value = ((obj or {}).get("data") or {}).get(ref["key"])
                if value is None:
                    return None
                return str(value) if kind == "configmaps" else base64.b64decode(value).decode()
        return None

    async def _environment(self, mounts: Mapping[str, str]) -> dict[str, str]:
        k = self.kubelet
        env: dict[str, str] = dict(os.environ) if k.inherit_env else {}
        env.update(k.extra_env)
        env["HOSTNAME"] = self.name
        container_env: dict[str, str] = {}
        for src in self.container.get("envFrom") or []:
            for ref_key, kind in (("configMapRef", "configmaps"), ("secretRef", "secrets")):
                if ref_key in src:
                    ref = src[ref_key]
                    obj = await self._wait_for(
                        f"/api/v1/namespaces/{self.namespace}/{kind}/{ref['name']}", bool(ref.get("optional"))
                    )
                    for key, value in ((obj or {}).get("data") or {}).items():
                        text = str(value) if kind == "configmaps" else base64.b64decode(value).decode()
                        container_env[src.get("prefix", "") + key] = text
        for var in self.container.get("env") or []:
            value = await self._env_value(var, {**container_env})
            if value is not None:
                container_env[var["name"]] = value
        container_env = {key: rewrite_paths(v, mounts) for key, v in container_env.items()}
        env.update(container_env)
        if k.port_env and self.ports:
            env[k.port_env] = str(self.primary_port())
        if k.termination_env and k.termination_env not in container_env:
            env[k.termination_env] = str(self.termination_path)
        return env

    def primary_port(self) -> int:
        return self.ports.get("http") or next(iter(self.ports.values()))

    async def prepare(self) -> tuple[list[str], dict[str, str], str]:
        c = self.container
        volumes = await self._volumes()
        mounts: dict[str, str] = {}
        for vm in c.get("volumeMounts") or []:
            local = volumes.get(vm["name"])
            if local is None:
                continue
            if vm.get("subPath"):
                local = str(Path(local) / vm["subPath"])
                Path(local).mkdir(parents=True, exist_ok=True)
            mounts[vm["mountPath"]] = local
        mounts[c.get("terminationMessagePath") or "/dev/termination-log"] = str(self.termination_path)
        for p in c.get("ports") or []:
            local_port = free_port()
            self.ports[str(p["containerPort"])] = local_port
            if p.get("name"):
                self.ports[p["name"]] = local_port
        annotations = {LOG_ANNOTATION: str(self.log_path)}
        if self.ports:
            annotations[PORT_ANNOTATION] = str(self.primary_port())
            annotations[PORTS_ANNOTATION] = json.dumps(self.ports, sort_keys=True)
        with contextlib.suppress(KubeError):
            await self.kubelet.client.merge_patch(
                pod_path(self.namespace, self.name), {"metadata": {"annotations": annotations}}
            )
        env = await self._environment(mounts)
        argv = [str(a) for a in (c.get("command") or self.kubelet.default_command)] + [
            str(a) for a in c.get("args") or []
        ]
        argv = [rewrite_paths(expand_vars(a, env), mounts) for a in argv]
        argv[0] = self.kubelet.command_map.get(argv[0], argv[0])
        cwd = (
            rewrite_paths(c["workingDir"], mounts)
            if c.get("workingDir")
            else str(self.kubelet.cwd or self.dir)
        )
        self.mounts = mounts
        return argv, env, cwd

    # --------------------------------------------------------------- running

    async def run(self) -> None:
        try:
            await self._run()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("local kubelet failed to run pod %s/%s", self.namespace, self.name)
            await self.report(
                "Failed", {"terminated": {"exitCode": 128, "reason": "StartError", "finishedAt": now_iso()}}
            )

    async def _run(self) -> None:
        await self.report("Pending", {"waiting": {"reason": "ContainerCreating"}})
        argv, env, cwd = await self.prepare()
        policy = (self.pod.get("spec") or {}).get("restartPolicy", "Always")
        backoff = self.kubelet.restart_backoff[0]
        while not self.terminating:
            self.termination_path.write_text("")
            log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
            with open(self.log_path, "ab") as logfile:
                try:
                    self.proc = await asyncio.create_subprocess_exec(
                        *argv,
                        env=env,
                        cwd=cwd,
                        stdout=logfile,
                        stderr=asyncio.subprocess.STDOUT,
                        stdin=asyncio.subprocess.DEVNULL,
                        start_new_session=True,
                    )
                except OSError as exc:
                    message = f"failed to start container process: {exc}"
                    logfile.write((message + "\n").encode())
                    await self.report(
                        "Failed",
                        {
                            "terminated": {
                                "exitCode": 128,
                                "reason": "StartError",
                                "message": message,
                                "finishedAt": now_iso(),
                            }
                        },
                    )
                    return
            self.started_at = now_iso()
            probe = self.container.get("readinessProbe")
            self.ready = probe is None
            await self.report("Running", {"running": {"startedAt": self.started_at}})
            self.prober = asyncio.create_task(self._probe(probe)) if probe else None
            liveness = self.container.get("livenessProbe")
            self.liveness = asyncio.create_task(self._liveness(liveness, self.proc)) if liveness else None
            try:
                rc = await self.proc.wait()
            finally:
                for task in (self.prober, self.liveness):
                    if task is not None:
                        task.cancel()
            self.ready = False
            exit_code = rc if rc >= 0 else 128 - rc
            terminated = {
                "exitCode": exit_code,
                "reason": "Completed" if exit_code == 0 else "Error",
                "startedAt": self.started_at,
                "finishedAt": now_iso(),
                "containerID": f"local://{self.proc.pid}",
            }
            message = self._termination_message(exit_code, log_offset)
            if message:
                terminated["message"] = message
            if self.terminating:
                self.final_state = terminated
                return
            restart = policy == "Always" or (policy == "OnFailure" and exit_code != 0)
            if not restart:
                await self.report("Succeeded" if exit_code == 0 else "Failed", {"terminated": terminated})
                return
            self.last_state = {"terminated": terminated}
            self.restart_count += 1
            await self.report(
                "Running",
                {
                    "waiting": {
                        "reason": "CrashLoopBackOff",
                        "message": f"back-off {backoff:g}s restarting failed "
                        f"container={self.container.get('name', '')} "
                        f"pod={self.name}_{self.namespace}({self.uid})",
                    }
                },
            )
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.kubelet.restart_backoff[1])

    def _termination_message(self, exit_code: int, log_offset: int) -> str:
        try:
            message = self.termination_path.read_bytes()[:MAX_MESSAGE].decode(errors="replace")
        except OSError:
            message = ""
        policy = self.container.get("terminationMessagePolicy", "File")
        if not message and exit_code != 0 and policy == "FallbackToLogsOnError":
            with open(self.log_path, "rb") as fh:
                fh.seek(log_offset)
                lines = fh.read().decode(errors="replace").splitlines()[-80:]
            message = "\n".join(lines)[-2048:]
        return message

    async def _probe_once(self, probe: dict[str, Any]) -> bool:
        timeout = float(probe.get("timeoutSeconds", 1))
        if "httpGet" in probe:
            spec = probe["httpGet"]
            port = self._resolve_port(spec.get("port"))
            url = f"http://{LOCAL_IP}:{port}{spec.get('path', '/')}"
            try:
                async with (
                    aiohttp.ClientSession() as session,
                    session.get(url, timeout=aiohttp.ClientTimeout(total=timeout)) as resp,
                ):
                    return 200 <= resp.status < 400
            except (aiohttp.ClientError, TimeoutError, OSError):
                return False
        if "tcpSocket" in probe:
            port = self._resolve_port(probe["tcpSocket"].get("port"))
            try:
                _, writer = await asyncio.wait_for(asyncio.open_connection(LOCAL_IP, port), timeout)
                writer.close()
                return True
            except (OSError, TimeoutError):
                return False
        if "exec" in probe:
            argv = [rewrite_paths(str(a), self.mounts) for a in probe["exec"].get("command") or []]
            argv[0] = self.kubelet.command_map.get(argv[0], argv[0])
            proc = await asyncio.create_subprocess_exec(
                *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
            )
            try:
                return await asyncio.wait_for(proc.wait(), timeout) == 0
            except TimeoutError:
                proc.kill()
                return False
        return True

    def _resolve_port(self, port: Any) -> int:
        if str(port) in self.ports:
            return self.ports[str(port)]
        return int(port)

    async def _probe(self, probe: dict[str, Any]) -> None:
        cap = self.kubelet.probe_period_cap
        await asyncio.sleep(min(float(probe.get("initialDelaySeconds", 0)), cap))
        period = min(float(probe.get("periodSeconds", 10)), cap)
        failures = 0
        success_threshold = int(probe.get("successThreshold", 1))
        successes = 0
        while True:
            ok = await self._probe_once(probe)
            if ok:
                successes, failures = successes + 1, 0
                if not self.ready and successes >= success_threshold:
                    self.ready = True
                    await self.report("Running", {"running": {"startedAt": self.started_at}})
            else:
                successes, failures = 0, failures + 1
                if self.ready and failures >= int(probe.get("failureThreshold", 3)):
                    self.ready = False
                    await self.report("Running", {"running": {"startedAt": self.started_at}})
            await asyncio.sleep(period)

    async def _liveness(self, probe: dict[str, Any], proc: asyncio.subprocess.Process) -> None:
        """Kill the container after ``failureThreshold`` failed liveness probes (real periods, unscaled)."""
        scale = self.kubelet.liveness_time_scale
        await asyncio.sleep(float(probe.get("initialDelaySeconds", 0)) * scale)
        period = float(probe.get("periodSeconds", 10)) * scale
        failures = 0
        while proc.returncode is None:
            if await self._probe_once(probe):
                failures = 0
            else:
                failures += 1
                if failures >= int(probe.get("failureThreshold", 3)):
                    log.info(
                        "liveness probe failed for %s/%s, killing the container", self.namespace, self.name
                    )
                    grace = probe.get("terminationGracePeriodSeconds")
                    if grace is None:
                        grace = (self.pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
                    self.signal(signal.SIGTERM, group=False)
                    try:
                        await asyncio.wait_for(proc.wait(), float(grace))
                    except TimeoutError:
                        self.signal(signal.SIGKILL)
                    return
            await asyncio.sleep(period)

    # ------------------------------------------------------------ termination

    def signal(self, sig: int, group: bool = True) -> bool:
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return False
        try:
            if group:
                os.killpg(proc.pid, sig)
            else:
                os.kill(proc.pid, sig)
        except ProcessLookupError:
            return False
        return True

    async def terminate(self, grace: float) -> None:
        """SIGTERM, wait for the grace period, SIGKILL; report; then confirm the deletion."""
        self.terminating = True
        proc = self.proc
        if proc is not None and proc.returncode is None:
            self.signal(signal.SIGTERM, group=False)
            try:
                await asyncio.wait_for(proc.wait(), timeout=max(grace, 0.0))
            except TimeoutError:
                self.signal(signal.SIGKILL)
                await proc.wait()
        if self.task is not None:
            if proc is None:
                self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self.task, timeout=2)
        state = getattr(self, "final_state", None)
        if state is not None:
            await self.report("Succeeded" if state["exitCode"] == 0 else "Failed", {"terminated": state})
        with contextlib.suppress(KubeError):
            await self.kubelet.client.request(
                "DELETE",
                pod_path(self.namespace, self.name),
                body={
                    "kind": "DeleteOptions",
                    "apiVersion": "v1",
                    "gracePeriodSeconds": 0,
                    "preconditions": {"uid": self.uid},
                },
            )

    def kill_now(self) -> None:
        self.terminating = True
        self.signal(signal.SIGKILL)
        for task in (self.task, self.prober, self.liveness):
            if task is not None:
                task.cancel()


class LocalKubelet:
    """Runs pods (and, with ``run_jobs``, Jobs) from an API server as local processes.

    Use ``start()``/``stop()`` (background thread with its own loop) or ``await run()`` in a loop.
    """

    def __init__(
        self,
        kubeconfig: Path | str,
        *,
        node_name: str = "local-kubelet",
        root: Path | str | None = None,
        default_command: Sequence[str] = (sys.executable, "-m", "backtest_kit_runner"),
        command_map: Mapping[str, str] | None = None,
        require_label: bool = False,
        namespace: str | None = None,
        port_env: str | None = "BACKTEST_KIT_HTTP_PORT",
        termination_env: str | None = "BACKTEST_KIT_OUTPUT",
        inherit_env: bool = True,
        extra_env: Mapping[str, str] | None = None,
        cwd: Path | str | None = None,
        restart_backoff: tuple[float, float] = (0.2, 2.0),
        probe_period_cap: float = 0.5,
        liveness_time_scale: float = 1.0,
        run_jobs: bool = True,
        register_node: bool = True,
        delete_node_on_stop: bool = True,
        node_labels: Mapping[str, str] | None = None,
        lease_period: float = 10.0,
        node_status_period: float = 30.0,
    ) -> None:
        self.kubeconfig = Path(kubeconfig)
        self.node_name = node_name
        self._own_root = root is None
        self.root = Path(root) if root is not None else Path(tempfile.mkdtemp(prefix="local-kubelet-"))
        self.default_command = list(default_command)
        self.command_map = {"python": sys.executable, "python3": sys.executable, **(command_map or {})}
        self.require_label = require_label
        self.namespace = namespace
        self.port_env = port_env
        self.termination_env = termination_env
        self.inherit_env = inherit_env
        self.extra_env = dict(extra_env or {})
        self.cwd = Path(cwd) if cwd is not None else None
        self.restart_backoff = restart_backoff
        self.probe_period_cap = probe_period_cap
        self.liveness_time_scale = liveness_time_scale
        self.run_jobs = run_jobs
        self.register_node = register_node
        self.delete_node_on_stop = delete_node_on_stop
        self.node_labels = dict(node_labels or {})
        self.lease_period = lease_period
        self.node_status_period = node_status_period
        self.node: NodeRegistration | None = None
        self._failure: BaseException | None = None
        self.workers: dict[str, PodWorker] = {}
        self.gone: dict[str, PodWorker] = {}  # deleted pods, kept for pod_log()
        self.synced = threading.Event()
        self._client: KubeClient | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._binding: set[str] = set()
        self._background: set[asyncio.Task[None]] = set()

    @property
    def client(self) -> KubeClient:
        assert self._client is not None, "the kubelet is not running"
        return self._client

    def pvc_dir(self, namespace: str, claim: str, uid: str | None = None) -> Path:
        """Where the data of a PersistentVolumeClaim lives on this host.

        One directory per claim *object* (uid), like one PersistentVolume per claim: a claim deleted
        and created again under the same name starts empty.  Without ``uid``: the newest one.
        """
        base = self.root / "pvc" / namespace / claim
        if uid is None:
            existing = sorted(base.glob("*"), key=lambda p: p.stat().st_mtime) if base.is_dir() else []
            if not existing:
                raise KeyError(f"no volume for claim {namespace}/{claim} on the local kubelet")
            return existing[-1]
        path = base / uid
        path.mkdir(parents=True, exist_ok=True)
        return path

    # ----------------------------------------------------------- lifecycle

    async def run(self) -> None:
        """Register the node, then run pods until cancelled."""
        self._client = KubeClient(self.kubeconfig)
        try:
            if self.register_node:
                self.node = NodeRegistration(
                    self.client,
                    self.node_name,
                    root=self.root,
                    labels=self.node_labels,
                    lease_period=self.lease_period,
                    status_period=self.node_status_period,
                    delete_on_stop=self.delete_node_on_stop,
                )
                await self.node.register()
                self._tasks.append(asyncio.create_task(self.node.heartbeat()))
            base = f"/api/v1/namespaces/{self.namespace}/pods" if self.namespace else "/api/v1/pods"
            params = {"labelSelector": f"{LOCAL_LABEL}=true"} if self.require_label else {}
            synced = asyncio.Event()
            self._tasks.append(asyncio.create_task(informer(self.client, base, params, self._on_pod, synced)))
            if self.run_jobs:
                from .jobs import JobController

                self.jobs = JobController(self.client, self.namespace)
                self._tasks.append(asyncio.create_task(self.jobs.run()))
            await synced.wait()
            self.synced.set()
            await asyncio.gather(*self._tasks)
        finally:
            await self._shutdown()

    async def _shutdown(self) -> None:
        for task in self._tasks:
            task.cancel()
        workers = [*self.workers.values(), *self.gone.values()]
        for worker in workers:
            worker.kill_now()
        tasks = [t for w in workers for t in (w.task, w.prober, w.liveness, w.term_task) if t is not None]
        await asyncio.gather(*self._tasks, *tasks, *self._background, return_exceptions=True)
        for worker in workers:
            if worker.proc is not None and worker.proc.returncode is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(worker.proc.wait(), 5)
        if self.node is not None:
            try:
                await asyncio.wait_for(self.node.unregister(), 10)
            except Exception as exc:
                log.warning("could not remove node %s: %r", self.node_name, exc)
        if self._client is not None:
            await self._client.close()

    def start(self, timeout: float = 10.0) -> LocalKubelet:
        ready: Future[None] = Future()

        def main() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            main_task = loop.create_task(self.run())
            self._main_task = main_task
            ready.set_result(None)
            try:
                loop.run_until_complete(main_task)
            except asyncio.CancelledError:
                pass
            except BaseException as exc:
                self._failure = exc
                log.error("local kubelet stopped: %r", exc)
            loop.close()

        self._thread = threading.Thread(target=main, name="local-kubelet", daemon=True)
        self._thread.start()
        ready.result(timeout)
        deadline = time.monotonic() + timeout
        while not self.synced.wait(0.05):
            if self._failure is not None:
                self.stop()
                raise RuntimeError(
                    f"local kubelet could not start: {self._failure} (on a real cluster its user needs "
                    "nodes, nodes/status, leases in kube-node-lease, pods/binding and pods/status)"
                ) from self._failure
            if time.monotonic() > deadline:
                raise TimeoutError("local kubelet could not register its node or list pods")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            if self._thread.is_alive():
                with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                    self._loop.call_soon_threadsafe(self._main_task.cancel)
                self._thread.join(timeout=15)
            self._thread = None
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> LocalKubelet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -------------------------------------------------------------- events

    def _mine(self, pod: dict[str, Any]) -> bool:
        node = (pod.get("spec") or {}).get("nodeName")
        if node:
            return bool(node == self.node_name)
        if self.require_label:
            return (pod["metadata"].get("labels") or {}).get(LOCAL_LABEL) == "true"
        return True

    def _on_pod(self, kind: str, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        uid = meta["uid"]
        worker = self.workers.get(uid)
        if kind == "DELETED":
            if worker is not None:
                self.workers.pop(uid, None)
                self.gone[uid] = worker
                worker.kill_now()
            return
        if not self._mine(pod):
            return
        if worker is not None:
            worker.pod["metadata"] = meta
        if meta.get("deletionTimestamp"):
            if worker is not None:
                if worker.term_task is None:
                    grace = float(meta.get("deletionGracePeriodSeconds") or 0)
                    worker.term_task = asyncio.create_task(worker.terminate(grace))
            elif (pod.get("spec") or {}).get("nodeName") == self.node_name and uid not in self._binding:
                self._binding.add(uid)
                self._spawn(self._confirm_delete(pod))
            return
        if worker is None and (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed"):
            if uid in self._binding:
                return
            self._binding.add(uid)
            self._spawn(self._adopt(pod))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _confirm_delete(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        with contextlib.suppress(KubeError):
            await self.client.request(
                "DELETE",
                pod_path(meta["namespace"], meta["name"]),
                body={"gracePeriodSeconds": 0, "preconditions": {"uid": meta["uid"]}},
            )

    async def _adopt(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        try:
            if not (pod.get("spec") or {}).get("nodeName"):
                await self.client.request(
                    "POST",
                    pod_path(meta["namespace"], meta["name"], "binding"),
                    body={
                        "apiVersion": "v1",
                        "kind": "Binding",
                        "metadata": {"name": meta["name"]},
                        "target": {"apiVersion": "v1", "kind": "Node", "name": self.node_name},
                    },
                )
        except KubeError as exc:
            log.debug("could not bind %s/%s: %s", meta["namespace"], meta["name"], exc)
            self._binding.discard(meta["uid"])
            return
        worker = PodWorker(self, pod)
        self.workers[meta["uid"]] = worker
        worker.task = asyncio.create_task(worker.run())

    # ----------------------------------------------------------- test helpers

    def _find(self, namespace: str, name: str) -> PodWorker:
        for worker in [*reversed(list(self.workers.values())), *reversed(list(self.gone.values()))]:
            if worker.namespace == namespace and worker.name == name:
                return worker
        raise KeyError(f"pod {namespace}/{name} is not running on the local kubelet")

    def kill_pod_process(self, namespace: str, name: str, sig: int = signal.SIGKILL) -> bool:
        """Send ``sig`` to the pod's process group (simulates a crash); False if it is not running."""
        try:
            return self._find(namespace, name).signal(sig)
        except KeyError:
            return False

    def pod_log(self, namespace: str, name: str) -> str:
        """Everything the pod's container wrote to stdout/stderr, all restarts included ("" if never run)."""
        try:
            worker = self._find(namespace, name)
        except KeyError:
            return ""
        return worker.log_path.read_text(errors="replace") if worker.log_path.exists() else ""

    def local_port(self, namespace: str, name: str, port: int | str | None = None) -> int:
        """The host port standing in for ``containerPort``/port name ``port`` (default: the primary one)."""
        worker = self._find(namespace, name)
        return worker.primary_port() if port is None else worker.ports[str(port)]

    def pod_url(self, namespace: str, name: str, port: int | str | None = None) -> str:
        return f"http://{LOCAL_IP}:{self.local_port(namespace, name, port)}"

    def pod_dir(self, namespace: str, name: str) -> Path:
        return self._find(namespace, name).dir
