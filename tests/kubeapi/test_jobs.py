"""The Job controller run by the local kubelet helper: Indexed and NonIndexed Jobs, retries, status."""

from __future__ import annotations

from typing import Any

from kubernetes import client

from .conftest import Api
from .fixtures import KubeAPI
from .jobs import compress_indexes
from .kubelet import LocalKubelet
from .server import wait_until


def job(name: str, code: str, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {
            **spec,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {"name": "task", "image": "backtest-kit:test", "command": ["python", "-c", code]}
                    ],
                }
            },
        },
    }


def finished(batch: client.BatchV1Api, name: str) -> Any:
    def check() -> Any:
        j = batch.read_namespaced_job(name, "default")
        types = {c.type for c in ((j.status and j.status.conditions) or []) if c.status == "True"}
        return j if types & {"Complete", "Failed"} else None

    return wait_until(check, timeout=20)


class TestIndexedJobs:
    def test_an_indexed_job_runs_every_index_and_completes(self, k8s: Api, kubelet: LocalKubelet) -> None:
        batch: Api = client.BatchV1Api(k8s)
        core: Api = client.CoreV1Api(k8s)
        code = (
            "import os; "
            "open('/dev/termination-log', 'w').write('index=' + os.environ['JOB_COMPLETION_INDEX'])"
        )
        batch.create_namespaced_job(
            "default", job("walk", code, completionMode="Indexed", completions=3, parallelism=2)
        )
        j = finished(batch, "walk")
        assert [c.type for c in j.status.conditions] == ["SuccessCriteriaMet", "Complete"]
        assert (j.status.succeeded, j.status.failed, j.status.active) == (3, 0, 0)
        assert j.status.completed_indexes == "0-2" and j.status.start_time and j.status.completion_time
        pods = core.list_namespaced_pod("default", label_selector="job-name=walk").items
        by_index = {p.metadata.annotations["batch.kubernetes.io/job-completion-index"]: p for p in pods}
        assert sorted(by_index) == ["0", "1", "2"]
        for index, pod in by_index.items():
            assert pod.metadata.name.startswith(f"walk-{index}-")
            assert pod.metadata.labels["batch.kubernetes.io/job-name"] == "walk"
            assert (
                pod.metadata.owner_references[0].kind == "Job" and pod.metadata.owner_references[0].controller
            )
            assert pod.status.container_statuses[0].state.terminated.message == f"index={index}"

    def test_parallelism_limits_concurrent_pods(self, k8s: Api, kubelet: LocalKubelet) -> None:
        batch: Api = client.BatchV1Api(k8s)
        core: Api = client.CoreV1Api(k8s)
        batch.create_namespaced_job(
            "default",
            job(
                "slow", "import time; time.sleep(0.5)", completionMode="Indexed", completions=3, parallelism=1
            ),
        )
        peak = 0

        def done() -> bool:
            nonlocal peak
            pods = core.list_namespaced_pod("default", label_selector="job-name=slow").items
            peak = max(peak, sum(1 for p in pods if p.status.phase in ("Pending", "Running")))
            j = batch.read_namespaced_job("slow", "default")
            return bool(j.status and j.status.succeeded == 3)

        wait_until(done, timeout=20)
        assert peak == 1


class TestFailures:
    def test_failed_pods_are_retried_up_to_the_backoff_limit(self, k8s: Api, kubelet: LocalKubelet) -> None:
        batch: Api = client.BatchV1Api(k8s)
        batch.create_namespaced_job("default", job("doomed", "import sys; sys.exit(1)", backoffLimit=1))
        j = finished(batch, "doomed")
        assert [c.type for c in j.status.conditions] == ["FailureTarget", "Failed"]
        assert j.status.conditions[-1].reason == "BackoffLimitExceeded"
        assert j.status.failed == 2 and j.status.succeeded == 0

    def test_a_non_indexed_job_completes_after_enough_successes(
        self, k8s: Api, kubelet: LocalKubelet
    ) -> None:
        batch: Api = client.BatchV1Api(k8s)
        batch.create_namespaced_job("default", job("plain", "pass", completions=2, parallelism=2))
        j = finished(batch, "plain")
        assert j.status.succeeded == 2 and j.status.conditions[-1].type == "Complete"
        assert j.status.completed_indexes is None


class TestJobDefaults:
    def test_the_server_defaults_jobs_and_labels_their_template(self, api: KubeAPI) -> None:
        batch: Api = client.BatchV1Api(api.api_client())
        j = batch.create_namespaced_job("default", job("d", "pass"))
        assert (j.spec.completions, j.spec.parallelism, j.spec.backoff_limit) == (1, 1, 6)
        assert j.spec.template.metadata.labels["job-name"] == "d"
        assert j.spec.selector.match_labels == {"batch.kubernetes.io/controller-uid": j.metadata.uid}

    def test_completed_indexes_are_compressed_into_ranges(self) -> None:
        assert compress_indexes([0, 1, 2, 4, 6, 7]) == "0-2,4,6-7"
        assert compress_indexes([]) == ""
