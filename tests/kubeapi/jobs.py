"""A small batch/v1 Job controller, run by the local kubelet helper against the fake API server.

The fake server, like kube-apiserver, only stores Jobs; in a cluster kube-controller-manager turns
them into pods.  This does the same over HTTP: creates pods from the template (NonIndexed, or
Indexed with ``completions``/``parallelism``), retries failures up to ``backoffLimit``, honours
``activeDeadlineSeconds``, ``suspend`` and ``ttlSecondsAfterFinished``, and writes the status the
way the real controller does (active, ready, succeeded, failed, completedIndexes, startTime,
completionTime, conditions SuccessCriteriaMet+Complete or FailureTarget+Failed).

Pods: name ``<job>-<index>-<random>`` (Indexed) or ``<job>-<random>``; labels ``job-name``,
``batch.kubernetes.io/job-name``, ``controller-uid``, ``batch.kubernetes.io/controller-uid`` (and
``batch.kubernetes.io/job-completion-index``); annotation ``batch.kubernetes.io/job-completion-index``;
env ``JOB_COMPLETION_INDEX`` from that annotation; a controller ownerReference to the Job.
Deviation: finished pods are counted in memory instead of via the ``job-tracking`` finalizer.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .client import KubeClient, KubeError, informer

log = logging.getLogger(__name__)

UID_LABEL = "batch.kubernetes.io/controller-uid"
INDEX_KEY = "batch.kubernetes.io/job-completion-index"


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


def compress_indexes(indexes: list[int]) -> str:
    """``[0, 1, 2, 4]`` -> ``"0-2,4"`` like ``status.completedIndexes``."""
    out: list[str] = []
    run: list[int] = []
    for i in sorted(set(indexes)):
        if run and i == run[-1] + 1:
            run.append(i)
            continue
        if run:
            out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [i]
    if run:
        out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ",".join(out)


@dataclass
class _Tracking:
    succeeded: set[str] = field(default_factory=set)
    failed: set[str] = field(default_factory=set)
    succeeded_indexes: set[int] = field(default_factory=set)


def _index(pod: dict[str, Any]) -> int | None:
    value = (pod["metadata"].get("annotations") or {}).get(INDEX_KEY)
    return int(value) if value is not None and str(value).isdigit() else None


def _condition(kind: str, reason: str, message: str) -> dict[str, Any]:
    t = now_iso()
    return {
        "type": kind,
        "status": "True",
        "reason": reason,
        "message": message,
        "lastProbeTime": t,
        "lastTransitionTime": t,
    }


class JobController:
    def __init__(self, client: KubeClient, namespace: str | None = None, resync: float = 0.3) -> None:
        self.client = client
        self.namespace = namespace
        self.resync = resync
        self.jobs: dict[str, dict[str, Any]] = {}
        self.pods: dict[str, dict[str, Any]] = {}
        self.tracking: dict[str, _Tracking] = {}
        self._wake = asyncio.Event()

    def _on_job(self, kind: str, job: dict[str, Any]) -> None:
        uid = job["metadata"]["uid"]
        if kind == "DELETED":
            self.jobs.pop(uid, None)
            self.tracking.pop(uid, None)
        else:
            self.jobs[uid] = job
        self._wake.set()

    def _on_pod(self, kind: str, pod: dict[str, Any]) -> None:
        uid = pod["metadata"]["uid"]
        if kind == "DELETED":
            old = self.pods.pop(uid, None)
            if old is not None:
                self._count(pod)
        else:
            self.pods[uid] = pod
        self._wake.set()

    def _count(self, pod: dict[str, Any]) -> None:
        job_uid = (pod["metadata"].get("labels") or {}).get(UID_LABEL)
        if not job_uid:
            return
        track = self.tracking.setdefault(job_uid, _Tracking())
        phase = (pod.get("status") or {}).get("phase")
        if phase == "Succeeded":
            track.succeeded.add(pod["metadata"]["uid"])
            idx = _index(pod)
            if idx is not None:
                track.succeeded_indexes.add(idx)
        elif phase == "Failed":
            track.failed.add(pod["metadata"]["uid"])

    async def run(self) -> None:
        ns = f"/namespaces/{self.namespace}" if self.namespace else ""
        tasks = [
            asyncio.create_task(informer(self.client, f"/apis/batch/v1{ns}/jobs", {}, self._on_job)),
            asyncio.create_task(
                informer(self.client, f"/api/v1{ns}/pods", {"labelSelector": UID_LABEL}, self._on_pod)
            ),
        ]
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.resync)
                self._wake.clear()
                for job in list(self.jobs.values()):
                    try:
                        await self.reconcile(job)
                    except KubeError as exc:
                        log.debug("job reconcile failed: %s", exc)
                    except Exception:
                        log.exception("job reconcile crashed")
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    # Complexity kept: the Job controller's decision steps in the order Kubernetes applies them.
    async def reconcile(self, job: dict[str, Any]) -> None:  # noqa: C901
        meta, spec = job["metadata"], job.get("spec") or {}
        status = copy.deepcopy(job.get("status") or {})
        uid, name, ns = meta["uid"], meta["name"], meta["namespace"]
        if meta.get("deletionTimestamp"):
            return
        conditions = status.get("conditions") or []
        finished = next(
            (c for c in conditions if c["type"] in ("Complete", "Failed") and c["status"] == "True"), None
        )
        if finished is not None:
            ttl = spec.get("ttlSecondsAfterFinished")
            done_at = status.get("completionTime") or finished.get("lastTransitionTime")
            if ttl is not None and done_at and (datetime.now(UTC) - _parse(done_at)).total_seconds() >= ttl:
                with contextlib.suppress(KubeError):
                    await self.client.request(
                        "DELETE",
                        f"/apis/batch/v1/namespaces/{ns}/jobs/{name}",
                        body={"propagationPolicy": "Background"},
                    )
            return
        if spec.get("suspend"):
            return
        track = self.tracking.setdefault(uid, _Tracking())
        pods = [p for p in self.pods.values() if (p["metadata"].get("labels") or {}).get(UID_LABEL) == uid]
        for pod in pods:
            self._count(pod)
        active = [
            p
            for p in pods
            if (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
            and not p["metadata"].get("deletionTimestamp")
        ]
        restarts = 0
        if ((spec.get("template") or {}).get("spec") or {}).get("restartPolicy") == "OnFailure":
            for pod in active:
                restarts += sum(
                    int(cs.get("restartCount", 0))
                    for cs in (pod.get("status") or {}).get("containerStatuses") or []
                )
        indexed = spec.get("completionMode") == "Indexed"
        completions = spec.get("completions")
        parallelism = int(spec.get("parallelism", 1))
        status.setdefault("startTime", now_iso())
        succeeded = len(track.succeeded_indexes) if indexed else len(track.succeeded)
        failed = len(track.failed)
        status["succeeded"], status["failed"] = succeeded, failed
        if indexed:
            status["completedIndexes"] = compress_indexes(sorted(track.succeeded_indexes))
        status["active"] = len(active)
        status["ready"] = sum(
            1
            for p in active
            if any(
                c.get("type") == "Ready" and c.get("status") == "True"
                for c in (p.get("status") or {}).get("conditions") or []
            )
        )
        status["terminating"] = sum(
            1
            for p in pods
            if p["metadata"].get("deletionTimestamp")
            and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
        )
        status["uncountedTerminatedPods"] = {}
        deadline = spec.get("activeDeadlineSeconds")
        failure: tuple[str, str] | None = None
        if failed + restarts > int(spec.get("backoffLimit", 6)):
            failure = ("BackoffLimitExceeded", "Job has reached the specified backoff limit")
        elif (
            deadline is not None
            and (datetime.now(UTC) - _parse(status["startTime"])).total_seconds() > deadline
        ):
            failure = ("DeadlineExceeded", "Job was active longer than specified deadline")
        if indexed:
            complete = completions is not None and succeeded >= int(completions)
        elif completions is None:
            complete = succeeded > 0 and not active
        else:
            complete = succeeded >= int(completions)
        if failure is not None:
            await self._delete_pods(active)
            status["active"], status["ready"] = 0, 0
            status["conditions"] = [
                *conditions,
                _condition("FailureTarget", *failure),
                _condition("Failed", *failure),
            ]
        elif complete:
            await self._delete_pods(active)
            status["active"] = 0
            status["completionTime"] = now_iso()
            status["conditions"] = [
                *conditions,
                _condition(
                    "SuccessCriteriaMet", "CompletionsReached", "Reached expected number of succeeded pods"
                ),
                _condition("Complete", "CompletionsReached", "Reached expected number of succeeded pods"),
            ]
        else:
            slots = max(parallelism - len(active), 0)
            if indexed:
                busy = {_index(p) for p in active}
                todo = [
                    i
                    for i in range(int(completions or 0))
                    if i not in track.succeeded_indexes and i not in busy
                ]
                for index in todo[:slots]:
                    await self._create_pod(job, index)
            else:
                if completions is None:
                    want = slots if succeeded == 0 else 0
                else:
                    want = min(slots, int(completions) - succeeded - len(active))
                for _ in range(max(want, 0)):
                    await self._create_pod(job, None)
        if status != (job.get("status") or {}):
            updated = await self.client.merge_patch(
                f"/apis/batch/v1/namespaces/{ns}/jobs/{name}/status", {"status": status}
            )
            self.jobs[uid] = updated

    async def _delete_pods(self, pods: list[dict[str, Any]]) -> None:
        for pod in pods:
            m = pod["metadata"]
            with contextlib.suppress(KubeError):
                await self.client.request("DELETE", f"/api/v1/namespaces/{m['namespace']}/pods/{m['name']}")

    async def _create_pod(self, job: dict[str, Any], index: int | None) -> None:
        meta = job["metadata"]
        template = copy.deepcopy((job.get("spec") or {}).get("template") or {})
        pmeta = template.get("metadata") or {}
        labels = dict(pmeta.get("labels") or {})
        labels.update(
            {
                UID_LABEL: meta["uid"],
                "controller-uid": meta["uid"],
                "job-name": meta["name"],
                "batch.kubernetes.io/job-name": meta["name"],
            }
        )
        annotations = dict(pmeta.get("annotations") or {})
        pspec = template.get("spec") or {}
        prefix = f"{meta['name']}-"
        if index is not None:
            labels[INDEX_KEY] = str(index)
            annotations[INDEX_KEY] = str(index)
            prefix = f"{meta['name']}-{index}-"
            pspec.setdefault("hostname", f"{meta['name']}-{index}")
            for container in pspec.get("containers") or []:
                env = [e for e in container.get("env") or [] if e.get("name") != "JOB_COMPLETION_INDEX"]
                env.insert(
                    0,
                    {
                        "name": "JOB_COMPLETION_INDEX",
                        "valueFrom": {
                            "fieldRef": {
                                "apiVersion": "v1",
                                "fieldPath": f"metadata.annotations['{INDEX_KEY}']",
                            }
                        },
                    },
                )
                container["env"] = env
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "generateName": prefix,
                "namespace": meta["namespace"],
                "labels": labels,
                "annotations": annotations,
                "ownerReferences": [
                    {
                        "apiVersion": "batch/v1",
                        "kind": "Job",
                        "name": meta["name"],
                        "uid": meta["uid"],
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": pspec,
        }
        created = await self.client.request("POST", f"/api/v1/namespaces/{meta['namespace']}/pods", body=pod)
        self.pods[created["metadata"]["uid"]] = created
