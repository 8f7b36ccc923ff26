"""The operator's few calls to the Kubernetes API, as plain dicts, off the event loop.

kopf watches and patches the custom objects itself; everything else (pods, PVCs, Jobs,
ConfigMaps, the Walker status written from pod events) goes through this module. It uses the
official ``kubernetes`` client (which already understands in-cluster service accounts and every
kubeconfig flavour), runs each blocking call in a worker thread, asks for raw JSON instead of the
client's model classes, and translates ``ApiException`` into three outcomes the handlers act on:

* "not found" / "already exists" are ordinary answers (``None`` / ``False``), not errors;
* :class:`ManifestRejected` (400, 422): the object we built is invalid — a permanent problem;
* :class:`Forbidden` (403): RBAC, an admission controller or a quota refused the call — shown on
  the object as a condition and an Event (retried slowly, since an administrator may fix it);
* :class:`ClusterUnavailable`: anything else (timeouts, 5xx, 429) — transient, retried later.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import kubernetes
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from .manifests import GROUP, VERSION

T = TypeVar("T")
MERGE_PATCH = "application/merge-patch+json"
USER_AGENT = "backtest-kit-operator"


class ClusterError(Exception):
    """Base of the API failures this module raises."""


class ClusterUnavailable(ClusterError):
    """A transient API failure: retry later."""


class Forbidden(ClusterUnavailable):
    """403: not allowed (RBAC, admission, quota). A subclass of ClusterUnavailable so any code that
    only retries keeps doing so, but handlers show it on the object instead of retrying silently."""


class ManifestRejected(ClusterError):
    """The API server refused an object as invalid (400/422): retrying the same object is futile."""


class Cluster:
    """Thin async facade over ``CoreV1Api``, ``BatchV1Api`` and ``CustomObjectsApi``."""

    def __init__(self, api_client: kubernetes.client.ApiClient) -> None:
        self._api = api_client
        self._core = kubernetes.client.CoreV1Api(api_client)
        self._batch = kubernetes.client.BatchV1Api(api_client)
        self._custom = kubernetes.client.CustomObjectsApi(api_client)

    @classmethod
    def from_environment(cls, pool_size: int = 32) -> Cluster:
        """In-cluster service account if available, else ``$KUBECONFIG`` / ``~/.kube/config``."""
        configuration = kubernetes.client.Configuration()
        try:
            kubernetes.config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        except kubernetes.config.ConfigException:
            kubernetes.config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        configuration.connection_pool_maxsize = pool_size
        client = kubernetes.client.ApiClient(configuration)
        client.user_agent = USER_AGENT  # audit logs (and the RBAC test) tell our calls from others'
        return cls(client)

    def close(self) -> None:
        self._api.close()  # type: ignore[no-untyped-call]

    async def _call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run one client call in a thread; JSON body as dict; errors translated (404/409 re-raised)."""

        def blocking() -> Any:
            response = fn(*args, _preload_content=False, _request_timeout=30, **kwargs)
            data = response.data
            return json.loads(data) if data else None

        try:
            return await asyncio.to_thread(blocking)
        except ApiException as exc:
            if exc.status in (404, 409):
                raise
            message = _api_message(exc)
            if exc.status in (400, 422):
                raise ManifestRejected(f"{what}: {message}") from exc
            if exc.status == 403:
                raise Forbidden(f"{what}: forbidden: {message}") from exc
            raise ClusterUnavailable(f"{what}: HTTP {exc.status}: {message}") from exc
        except (HTTPError, OSError, json.JSONDecodeError) as exc:
            raise ClusterUnavailable(f"{what}: {exc.__class__.__name__}: {exc}") from exc

    async def _get(self, what: str, fn: Callable[..., Any], *args: Any) -> dict[str, Any] | None:
        try:
            result: dict[str, Any] = await self._call(what, fn, *args)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise ClusterUnavailable(f"{what}: HTTP {exc.status}: {_api_message(exc)}") from exc
        return result

    async def _create(
        self, what: str, fn: Callable[..., Any], namespace: str, body: Mapping[str, Any]
    ) -> bool:
        """True if created, False if an object of that name already exists."""
        try:
            await self._call(what, fn, namespace, dict(body))
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise ClusterUnavailable(f"{what}: HTTP {exc.status}: {_api_message(exc)}") from exc
        return True

    async def _delete(self, what: str, fn: Callable[..., Any], name: str, namespace: str, **kw: Any) -> bool:
        """True if a deletion was issued, False if the object was already gone."""
        try:
            await self._call(what, fn, name, namespace, **kw)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise ClusterUnavailable(f"{what}: HTTP {exc.status}: {_api_message(exc)}") from exc
        return True

    # Pods ---------------------------------------------------------------------------------------

    async def get_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._get(f"get pod {namespace}/{name}", self._core.read_namespaced_pod, name, namespace)

    async def create_pod(self, body: Mapping[str, Any]) -> bool:
        ns, name = _ns_name(body)
        return await self._create(f"create pod {ns}/{name}", self._core.create_namespaced_pod, ns, body)

    async def delete_pod(self, namespace: str, name: str, *, uid: str | None = None) -> bool:
        """Delete a pod; with ``uid`` only that incarnation (a newer pod of the same name survives)."""
        body: dict[str, Any] = {"propagationPolicy": "Background"}
        if uid:
            body["preconditions"] = {"uid": uid}
        # A uid precondition that no longer holds (409: another pod now) is a ClusterUnavailable.
        return await self._delete(
            f"delete pod {namespace}/{name}", self._core.delete_namespaced_pod, name, namespace, body=body
        )

    async def list_pods(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        result = await self._call(
            f"list pods {namespace} {label_selector}",
            self._core.list_namespaced_pod,
            namespace,
            label_selector=label_selector,
        )
        return list((result or {}).get("items") or [])

    # PersistentVolumeClaims ---------------------------------------------------------------------

    async def get_pvc(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._get(
            f"get pvc {namespace}/{name}", self._core.read_namespaced_persistent_volume_claim, name, namespace
        )

    async def create_pvc(self, body: Mapping[str, Any]) -> bool:
        ns, name = _ns_name(body)
        return await self._create(
            f"create pvc {ns}/{name}", self._core.create_namespaced_persistent_volume_claim, ns, body
        )

    async def delete_pvc(self, namespace: str, name: str) -> bool:
        return await self._delete(
            f"delete pvc {namespace}/{name}",
            self._core.delete_namespaced_persistent_volume_claim,
            name,
            namespace,
        )

    async def release_pvc(self, namespace: str, name: str) -> bool:
        """Drop the PVC's owner references so garbage collection never deletes it (False if gone)."""
        try:
            await self._call(
                f"patch pvc {namespace}/{name}",
                self._core.patch_namespaced_persistent_volume_claim,
                name,
                namespace,
                {"metadata": {"ownerReferences": None}},
                _content_type=MERGE_PATCH,
            )
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise ClusterUnavailable(f"patch pvc {namespace}/{name}: {_api_message(exc)}") from exc
        return True

    # Secrets ------------------------------------------------------------------------------------

    async def get_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._get(
            f"get secret {namespace}/{name}", self._core.read_namespaced_secret, name, namespace
        )

    async def create_secret(self, body: Mapping[str, Any]) -> bool:
        ns, name = _ns_name(body)
        return await self._create(f"create secret {ns}/{name}", self._core.create_namespaced_secret, ns, body)

    # Jobs and ConfigMaps ------------------------------------------------------------------------

    async def get_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._get(
            f"get job {namespace}/{name}", self._batch.read_namespaced_job, name, namespace
        )

    async def create_job(self, body: Mapping[str, Any]) -> bool:
        ns, name = _ns_name(body)
        return await self._create(f"create job {ns}/{name}", self._batch.create_namespaced_job, ns, body)

    async def get_configmap(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._get(
            f"get configmap {namespace}/{name}", self._core.read_namespaced_config_map, name, namespace
        )

    async def apply_configmap(self, body: Mapping[str, Any]) -> None:
        """Create the ConfigMap, or replace its data if it exists."""
        ns, name = _ns_name(body)
        if await self._create(
            f"create configmap {ns}/{name}", self._core.create_namespaced_config_map, ns, body
        ):
            return
        try:
            await self._call(
                f"patch configmap {ns}/{name}",
                self._core.patch_namespaced_config_map,
                name,
                ns,
                {"data": dict(body.get("data") or {})},
                _content_type=MERGE_PATCH,
            )
        except ApiException as exc:
            raise ClusterUnavailable(f"patch configmap {ns}/{name}: {_api_message(exc)}") from exc

    # Custom objects ----------------------------------------------------------------------------

    async def get_custom(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._get(
            f"get {plural} {namespace}/{name}",
            self._custom.get_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            plural,
            name,
        )

    async def patch_custom_status(
        self, plural: str, namespace: str, name: str, status: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        """Merge-patch the status subresource; None if the object is gone."""
        try:
            result: dict[str, Any] = await self._call(
                f"patch {plural}/status {namespace}/{name}",
                self._custom.patch_namespaced_custom_object_status,
                GROUP,
                VERSION,
                namespace,
                plural,
                name,
                {"status": dict(status)},
                _content_type=MERGE_PATCH,
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise ClusterUnavailable(
                f"patch {plural}/status {namespace}/{name}: {_api_message(exc)}"
            ) from exc
        return result


def _ns_name(body: Mapping[str, Any]) -> tuple[str, str]:
    meta = body.get("metadata") or {}
    return str(meta.get("namespace") or "default"), str(meta.get("name"))


def _api_message(exc: ApiException) -> str:
    """The ``message`` of a Kubernetes Status body, else the raw reason."""
    try:
        body = json.loads(exc.body or "")
    except (TypeError, ValueError):
        body = None
    if isinstance(body, dict) and body.get("message"):
        return str(body["message"])
    return str(exc.reason or exc.status)
