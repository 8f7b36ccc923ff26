"""The four patch flavours the API server accepts: JSON merge, JSON (RFC 6902), strategic merge and apply.

Strategic merge covers what kopf and the ``kubernetes`` client send for built-in kinds: maps merge
recursively and the well-known lists of objects merge by their patch merge key.
"""

from __future__ import annotations

import copy
from typing import Any

from .errors import ApiError, bad_request

# list field name -> merge key, from the Kubernetes API's patchMergeKey annotations
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "imagePullSecrets": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "conditions": "type",
    "ownerReferences": "uid",
    "hostAliases": "ip",
    "containerStatuses": "name",
    "initContainerStatuses": "name",
    "podIPs": "ip",
}
# lists of scalars that merge as sets
MERGE_SCALAR_LISTS = {"finalizers"}


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise bad_request(f"invalid JSON pointer {path!r}")
    return [_unescape(p) for p in path[1:].split("/")]


def _fail(message: str) -> ApiError:
    return ApiError(422, message, "Invalid")


def _resolve(doc: Any, tokens: list[str]) -> Any:
    cur = doc
    for tok in tokens:
        if isinstance(cur, dict):
            if tok not in cur:
                raise _fail(f'doc is missing path: "/{"/".join(tokens)}": missing value')
            cur = cur[tok]
        elif isinstance(cur, list):
            try:
                idx = int(tok)
            except ValueError:
                raise _fail(f"invalid array index {tok!r}") from None
            if not 0 <= idx < len(cur):
                raise _fail(f"Unable to access invalid index: {idx}: invalid index referenced")
            cur = cur[idx]
        else:
            raise _fail(f'doc is missing path: "/{"/".join(tokens)}": missing value')
    return cur


def _add(doc: Any, tokens: list[str], value: Any) -> Any:
    if not tokens:
        return value
    parent = _resolve(doc, tokens[:-1])
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        if last == "-":
            parent.append(value)
        else:
            idx = int(last) if last.lstrip("-").isdigit() else -1
            if not 0 <= idx <= len(parent):
                raise _fail(f"Unable to access invalid index: {last}: invalid index referenced")
            parent.insert(idx, value)
    else:
        raise _fail(f'doc is missing path: "/{"/".join(tokens)}": missing value')
    return doc


def _remove(doc: Any, tokens: list[str]) -> tuple[Any, Any]:
    if not tokens:
        return None, doc
    parent = _resolve(doc, tokens[:-1])
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise _fail(f"Unable to remove nonexistent key: {last}: missing value")
        return doc, parent.pop(last)
    if isinstance(parent, list):
        idx = int(last) if last.lstrip("-").isdigit() else -1
        if not 0 <= idx < len(parent):
            raise _fail(f"Unable to remove invalid index: {last}: invalid index referenced")
        return doc, parent.pop(idx)
    raise _fail(f'doc is missing path: "/{"/".join(tokens)}": missing value')


def json_patch(doc: Any, ops: Any) -> Any:
    """RFC 6902; a failing ``test`` or a missing path is a 422 like on the real server."""
    if not isinstance(ops, list):
        raise bad_request("json: cannot unmarshal object into Go value of type jsonpatch.Patch")
    doc = copy.deepcopy(doc)
    for op in ops:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise bad_request(f"invalid JSON patch operation {op!r}")
        kind, tokens = op["op"], _pointer(op["path"])
        if kind == "add":
            doc = _add(doc, tokens, copy.deepcopy(op.get("value")))
        elif kind == "remove":
            doc, _ = _remove(doc, tokens)
        elif kind == "replace":
            _resolve(doc, tokens)
            doc, _ = _remove(doc, tokens)
            doc = _add(doc, tokens, copy.deepcopy(op.get("value")))
        elif kind in ("move", "copy"):
            src = _pointer(op.get("from", ""))
            if kind == "move":
                doc, value = _remove(doc, src)
            else:
                value = copy.deepcopy(_resolve(doc, src))
            doc = _add(doc, tokens, value)
        elif kind == "test":
            actual = _resolve(doc, tokens)
            if actual != op.get("value"):
                raise _fail(f"testing value {op['path']} failed: test failed")
        else:
            raise bad_request(f"Unexpected kind: {kind}")
    return doc


def _smp_list(field: str, target: list[Any], patch: list[Any]) -> list[Any]:
    key = MERGE_KEYS.get(field)
    if field == "ports":
        key = (
            "containerPort"
            if any(isinstance(p, dict) and "containerPort" in p for p in patch + target)
            else "port"
        )
    if field in MERGE_SCALAR_LISTS:
        out = list(target)
        out.extend(v for v in patch if v not in out)
        return out
    if key is None or not all(isinstance(p, dict) for p in patch):
        return [strip_directives(p) for p in patch]
    out = copy.deepcopy(target)
    for item in patch:
        directive = item.get("$patch")
        idx = next(
            (i for i, t in enumerate(out) if isinstance(t, dict) and t.get(key) == item.get(key)), None
        )
        if directive == "delete":
            if idx is not None:
                out.pop(idx)
            continue
        if directive == "replace":
            return [strip_directives(p) for p in patch if p.get("$patch") != "replace"]
        if idx is None:
            out.append(strip_directives(item))
        else:
            out[idx] = strategic_merge_patch(out[idx], item)
    return out


def strip_directives(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: strip_directives(v) for k, v in value.items() if not k.startswith("$")}
    if isinstance(value, list):
        return [strip_directives(v) for v in value]
    return value


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return strip_directives(patch)
    if patch.get("$patch") == "delete":
        return None
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$deleteFromPrimitiveList/"):
            name = key.split("/", 1)[1]
            result[name] = [v for v in result.get(name) or [] if v not in (value or [])]
            continue
        if key.startswith("$"):
            continue
        if value is None:
            result.pop(key, None)
        elif isinstance(value, list) and isinstance(result.get(key), list):
            result[key] = _smp_list(key, result[key], value)
        elif isinstance(value, dict):
            merged = strategic_merge_patch(result.get(key), value)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        else:
            result[key] = strip_directives(value)
    return result
