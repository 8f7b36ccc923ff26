"""Kubeconfig files pointing clients (kopf, the ``kubernetes`` client, the local kubelet) at a server.

The fake server needs no authentication; the file still carries a dummy bearer token because some
client code paths expect a credential to exist.  Plain ``http://`` is accepted by both kopf and
the official client.
"""

from __future__ import annotations

from pathlib import Path

import yaml

CONTEXT = "fake-kube"


def kubeconfig_dict(server: str, namespace: str = "default", token: str = "fake-token") -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": CONTEXT, "cluster": {"server": server}}],
        "users": [{"name": CONTEXT, "user": {"token": token}}],
        "contexts": [
            {"name": CONTEXT, "context": {"cluster": CONTEXT, "user": CONTEXT, "namespace": namespace}}
        ],
        "current-context": CONTEXT,
        "preferences": {},
    }


def write_kubeconfig(path: Path | str, server: str, namespace: str = "default") -> Path:
    """Write a kubeconfig for ``server`` (e.g. ``http://127.0.0.1:PORT``) to ``path`` and return it."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump(kubeconfig_dict(server, namespace), sort_keys=False))
    return out
