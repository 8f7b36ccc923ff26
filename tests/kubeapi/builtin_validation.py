"""Validation of built-in kinds (pods, PVCs, ConfigMaps, Secrets, Node taints) where clients go wrong.

A fake server that accepts anything hides bugs a real cluster would reject at once: a volumeMount
naming no volume, a container name with capitals, a bad resource quantity, requests above limits,
a PVC without a size, invalid base64 in a Secret.  These checks reproduce the real messages.
"""

from __future__ import annotations

import base64
import binascii
import re
from decimal import Decimal, InvalidOperation
from typing import Any

from .errors import Cause

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_PORT_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
_CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
_QUANTITY = re.compile(r"^([+-]?[0-9.]+)([eE][+-]?[0-9]+|[KMGTPE]i|[numkMGTPE]|)$")
_SUFFIX: dict[str, Decimal] = {
    "": Decimal(1),
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    **{s: Decimal(10) ** (3 * (i + 1)) for i, s in enumerate("kMGTPE")},
    **{s + "i": Decimal(2) ** (10 * (i + 1)) for i, s in enumerate("KMGTPE")},
}
QUANTITY_MESSAGE = "must match the regex ^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$"
LABEL_MESSAGE = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start "
    "and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)


def parse_quantity(text: str) -> Decimal | None:
    """The value of a Kubernetes quantity (``500m``, ``1Gi``, ``2e3``), or None if malformed."""
    m = _QUANTITY.match(str(text))
    if not m:
        return None
    try:
        number = Decimal(m.group(1))
    except InvalidOperation:
        return None
    suffix = m.group(2)
    if suffix[:1] in ("e", "E") and len(suffix) > 1:
        return number * Decimal(10) ** int(suffix[1:])
    return number * _SUFFIX[suffix]


def _resources(path: str, res: dict[str, Any]) -> list[Cause]:
    causes: list[Cause] = []
    parsed: dict[str, dict[str, Decimal]] = {"requests": {}, "limits": {}}
    for kind in ("requests", "limits"):
        for name, value in (res.get(kind) or {}).items():
            q = parse_quantity(str(value))
            if q is None:
                causes.append(
                    Cause(
                        f"{path}.{kind}[{name}]",
                        "FieldValueInvalid",
                        f'Invalid value: "{value}": {QUANTITY_MESSAGE}',
                    )
                )
            elif q < 0:
                causes.append(
                    Cause(
                        f"{path}.{kind}[{name}]",
                        "FieldValueInvalid",
                        f'Invalid value: "{value}": must be greater than or equal to 0',
                    )
                )
            else:
                parsed[kind][name] = q
    for name, req in parsed["requests"].items():
        lim = parsed["limits"].get(name)
        if lim is not None and req > lim:
            causes.append(
                Cause(
                    f"{path}.requests",
                    "FieldValueInvalid",
                    f'Invalid value: "{res["requests"][name]}": must be less than or equal to {name} '
                    f"limit of {res['limits'][name]}",
                )
            )
    return causes


# Complexity kept: one check per pod spec field, in the API server's order, so its causes come out the same.
def validate_pod_spec(spec: dict[str, Any], path: str = "spec") -> list[Cause]:  # noqa: C901
    causes: list[Cause] = []
    volumes = set()
    for i, vol in enumerate(spec.get("volumes") or []):
        name = vol.get("name", "")
        if name in volumes:
            causes.append(
                Cause(f"{path}.volumes[{i}].name", "FieldValueDuplicate", f'Duplicate value: "{name}"')
            )
        elif not _DNS_LABEL.match(name) or len(name) > 63:
            causes.append(
                Cause(
                    f"{path}.volumes[{i}].name",
                    "FieldValueInvalid",
                    f'Invalid value: "{name}": {LABEL_MESSAGE}',
                )
            )
        volumes.add(name)
    seen: set[str] = set()
    for group in ("initContainers", "containers"):
        for i, c in enumerate(spec.get(group) or []):
            cpath = f"{path}.{group}[{i}]"
            name = c.get("name", "")
            if name and name in seen:
                causes.append(Cause(f"{cpath}.name", "FieldValueDuplicate", f'Duplicate value: "{name}"'))
            elif name and (not _DNS_LABEL.match(name) or len(name) > 63):
                causes.append(
                    Cause(f"{cpath}.name", "FieldValueInvalid", f'Invalid value: "{name}": {LABEL_MESSAGE}')
                )
            seen.add(name)
            for j, vm in enumerate(c.get("volumeMounts") or []):
                if vm.get("name") not in volumes:
                    causes.append(
                        Cause(
                            f"{cpath}.volumeMounts[{j}].name",
                            "FieldValueNotFound",
                            f'Not found: "{vm.get("name")}"',
                        )
                    )
                if not vm.get("mountPath"):
                    causes.append(
                        Cause(f"{cpath}.volumeMounts[{j}].mountPath", "FieldValueRequired", "Required value")
                    )
            port_names: set[str] = set()
            for j, port in enumerate(c.get("ports") or []):
                number = port.get("containerPort")
                if not isinstance(number, int) or not 1 <= number <= 65535:
                    causes.append(
                        Cause(
                            f"{cpath}.ports[{j}].containerPort",
                            "FieldValueInvalid",
                            f"Invalid value: {number}: must be between 1 and 65535, inclusive",
                        )
                    )
                pname = port.get("name")
                if pname is not None:
                    if len(pname) > 15 or not _PORT_NAME.match(pname) or not re.search("[a-z]", pname):
                        causes.append(
                            Cause(
                                f"{cpath}.ports[{j}].name",
                                "FieldValueInvalid",
                                f'Invalid value: "{pname}": must be no more than 15 characters, '
                                "contain only lowercase alphanumeric characters or '-', contain at "
                                "least one letter (a-z) and start and end with an alphanumeric",
                            )
                        )
                    elif pname in port_names:
                        causes.append(
                            Cause(
                                f"{cpath}.ports[{j}].name",
                                "FieldValueDuplicate",
                                f'Duplicate value: "{pname}"',
                            )
                        )
                    port_names.add(pname)
            causes += _resources(f"{cpath}.resources", c.get("resources") or {})
            for j, env in enumerate(c.get("env") or []):
                if not env.get("name"):
                    causes.append(Cause(f"{cpath}.env[{j}].name", "FieldValueRequired", "Required value"))
    return causes


def validate_pvc_spec(spec: dict[str, Any]) -> list[Cause]:
    causes: list[Cause] = []
    if not spec.get("accessModes"):
        causes.append(
            Cause(
                "spec.accessModes", "FieldValueRequired", "Required value: at least 1 access mode is required"
            )
        )
    storage = ((spec.get("resources") or {}).get("requests") or {}).get("storage")
    if storage is None:
        causes.append(Cause("spec.resources[storage]", "FieldValueRequired", "Required value"))
    else:
        causes += _resources("spec.resources", spec.get("resources") or {})
    return causes


def validate_data_keys(obj: dict[str, Any], secret: bool) -> list[Cause]:
    causes: list[Cause] = []
    for field in ("data", "binaryData") if not secret else ("data",):
        for key in obj.get(field) or {}:
            if not _CONFIG_KEY.match(key) or len(key) > 253:
                causes.append(
                    Cause(
                        f"{field}[{key}]",
                        "FieldValueInvalid",
                        f'Invalid value: "{key}": a valid config key must consist of alphanumeric '
                        "characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or "
                        "'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
                    )
                )
    return causes


def secret_data_error(obj: dict[str, Any]) -> str | None:
    """What the real server says (400) when a Secret's data is not base64."""
    for value in (obj.get("data") or {}).values():
        if not isinstance(value, str):
            return "json: cannot unmarshal into Go struct field Secret.data of type []uint8"
        try:
            base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return 'Secret in version "v1" cannot be handled as a Secret: illegal base64 data at input byte 0'
    return None


TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
_QUALIFIED = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def validate_node_spec(spec: dict[str, Any]) -> list[Cause]:
    """Node taints: a qualified-name key, a label-like value, a known effect, no duplicate key+effect."""
    causes: list[Cause] = []
    seen: set[tuple[str, str]] = set()
    for i, taint in enumerate(spec.get("taints") or []):
        path = f"spec.taints[{i}]"
        key, value, effect = str(taint.get("key") or ""), taint.get("value"), taint.get("effect")
        prefix, _, name = key.rpartition("/")
        if not key:
            causes.append(Cause(f"{path}.key", "FieldValueRequired", "Required value"))
        elif (prefix and not _SUBDOMAIN.match(prefix)) or len(name) > 63 or not _QUALIFIED.match(name):
            causes.append(
                Cause(
                    f"{path}.key",
                    "FieldValueInvalid",
                    f"Invalid value: \"{key}\": name part must consist of alphanumeric characters, '-', "
                    "'_' or '.', and must start and end with an alphanumeric character",
                )
            )
        if value is not None and (len(str(value)) > 63 or not _LABEL_VALUE.match(str(value))):
            causes.append(
                Cause(
                    f"{path}.value",
                    "FieldValueInvalid",
                    f'Invalid value: "{value}": a valid label must be an empty string or consist of '
                    "alphanumeric characters, '-', '_' or '.', and must start and end with an "
                    "alphanumeric character",
                )
            )
        if not effect:
            causes.append(Cause(f"{path}.effect", "FieldValueRequired", "Required value"))
        elif effect not in TAINT_EFFECTS:
            causes.append(
                Cause(
                    f"{path}.effect",
                    "FieldValueNotSupported",
                    f'Unsupported value: "{effect}": supported values: '
                    + ", ".join(f'"{e}"' for e in TAINT_EFFECTS),
                )
            )
        if (key, str(effect)) in seen:
            causes.append(
                Cause(
                    f"{path}",
                    "FieldValueDuplicate",
                    f'Duplicate value: "{key}={value or ""}:{effect}": '
                    "taints must be unique by key and effect pair",
                )
            )
        seen.add((key, str(effect)))
    return causes
