"""A fake Kubernetes API server and a local kubelet, so the operator can be tested without a cluster.

The server (:mod:`.server`) speaks the real REST protocol over HTTP, so kopf and the official
``kubernetes`` client run against it unmodified; the kubelet (:mod:`.kubelet`) turns pods and Jobs
into local processes.  See ``README.md`` in this folder for the semantics and the deviations.
"""

from .kubeconfig import write_kubeconfig
from .server import KubeAPIServer

__all__ = ["KubeAPIServer", "write_kubeconfig"]
