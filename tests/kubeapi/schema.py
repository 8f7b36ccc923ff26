"""Structural-schema handling for custom resources: pruning, defaulting and validation.

Follows the apiextensions-apiserver order (prune unknown fields and non-nullable nulls, apply
defaults top-down, then validate the whole object and report every violation with its field path
and the real server's wording), plus ``x-kubernetes-validations`` via the small evaluator in
:mod:`.cel`.
"""

from __future__ import annotations

import copy
import json
import logging
import re
from datetime import datetime
from typing import Any

from . import cel
from .errors import Cause

log = logging.getLogger(__name__)

_ROOT_KEEP = ("apiVersion", "kind", "metadata")
_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


def _props(schema: dict[str, Any]) -> dict[str, Any]:
    return schema.get("properties") or {}


def _preserve(schema: dict[str, Any]) -> bool:
    return bool(schema.get("x-kubernetes-preserve-unknown-fields"))


def prune(value: Any, schema: dict[str, Any] | None, *, root: bool = False) -> Any:
    """Drop fields the schema does not know and nulls that are not ``nullable`` (in place, returns value)."""
    if schema is None:
        return value
    if isinstance(value, dict) and not schema.get("x-kubernetes-int-or-string"):
        props = _props(schema)
        addl = schema.get("additionalProperties")
        embedded = schema.get("x-kubernetes-embedded-resource")
        for key in list(value):
            if (root or embedded) and key in _ROOT_KEEP:
                continue
            sub = props.get(key)
            if sub is None and isinstance(addl, dict):
                sub = addl
            if sub is None:
                if not (_preserve(schema) or addl is True):
                    del value[key]
                continue
            if value[key] is None and not sub.get("nullable"):
                del value[key]
                continue
            value[key] = prune(value[key], sub)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [prune(v, schema["items"]) for v in value]
    return value


def apply_defaults(value: Any, schema: dict[str, Any] | None) -> Any:
    """Apply ``default`` at every level, top-down, as the real server does on create, update and read."""
    if schema is None:
        return value
    if isinstance(value, dict):
        for key, sub in _props(schema).items():
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
        for key in list(value):
            sub = _props(schema).get(key)
            if sub is None and isinstance(schema.get("additionalProperties"), dict):
                sub = schema["additionalProperties"]
            if sub is not None:
                value[key] = apply_defaults(value[key], sub)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [apply_defaults(v, schema["items"]) for v in value]
    return value


def show(value: Any) -> str:
    """Render a value the way Go's ``%#v`` does in field errors (objects/arrays by type name)."""
    if isinstance(value, dict):
        return '"object"'
    if isinstance(value, list):
        return '"array"'
    if value is None:
        return "null"
    return json.dumps(value)


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


def _type_ok(value: Any, typ: str) -> bool:
    actual = _type_name(value)
    return actual == typ or (typ == "number" and actual == "integer")


def child(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _num(n: float) -> str:
    return str(int(n)) if isinstance(n, float) and n.is_integer() else str(n)


# Complexity kept: one branch per OpenAPI keyword the API server enforces on custom resources.
def validate(value: Any, schema: dict[str, Any] | None, path: str = "") -> list[Cause]:  # noqa: C901
    """Every violation of ``schema`` in ``value``, as ``details.causes`` entries."""
    if schema is None:
        return []
    errs: list[Cause] = []

    def bad(reason: str, message: str) -> None:
        errs.append(Cause(path, reason, message))

    if value is None:
        if not schema.get("nullable") and schema.get("type"):
            bad(
                "FieldValueTypeInvalid",
                f'Invalid value: "null": {path} in body must be of type {schema["type"]}: "null"',
            )
        return errs
    typ = schema.get("type")
    if schema.get("x-kubernetes-int-or-string"):
        if not isinstance(value, (int, str)) or isinstance(value, bool):
            bad(
                "FieldValueTypeInvalid",
                f'Invalid value: "{_type_name(value)}": {path} in body must be of type integer,string: '
                f'"{_type_name(value)}"',
            )
            return errs
    elif typ and not _type_ok(value, typ):
        bad(
            "FieldValueTypeInvalid",
            f'Invalid value: "{_type_name(value)}": {path} in body must be of type {typ}: '
            f'"{_type_name(value)}"',
        )
        return errs

    if "enum" in schema and value not in schema["enum"]:
        supported = ", ".join(show(v) for v in schema["enum"])
        bad("FieldValueNotSupported", f"Unsupported value: {show(value)}: supported values: {supported}")

    if isinstance(value, str):
        if "pattern" in schema and not re.search(schema["pattern"], value):
            bad(
                "FieldValueInvalid",
                f"Invalid value: {show(value)}: {path} in body should match '{schema['pattern']}'",
            )
        if "minLength" in schema and len(value) < schema["minLength"]:
            bad(
                "FieldValueInvalid",
                f"Invalid value: {show(value)}: "
                f"{path} in body should be at least {schema['minLength']} chars long",
            )
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            bad("FieldValueTooLong", f"Too long: may not be more than {schema['maxLength']} bytes")
        if schema.get("format") == "date-time" and not _DATE_TIME.match(value):
            bad(
                "FieldValueInvalid",
                f"Invalid value: {show(value)}: {path} in body must be of type date-time: {show(value)}",
            )

    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema:
            lo = schema["minimum"]
            if schema.get("exclusiveMinimum") and value <= lo:
                bad(
                    "FieldValueInvalid",
                    f"Invalid value: {show(value)}: {path} in body should be greater than {_num(lo)}",
                )
            elif value < lo:
                bad(
                    "FieldValueInvalid",
                    f"Invalid value: {show(value)}: "
                    f"{path} in body should be greater than or equal to {_num(lo)}",
                )
        if "maximum" in schema:
            hi = schema["maximum"]
            if schema.get("exclusiveMaximum") and value >= hi:
                bad(
                    "FieldValueInvalid",
                    f"Invalid value: {show(value)}: {path} in body should be less than {_num(hi)}",
                )
            elif value > hi:
                bad(
                    "FieldValueInvalid",
                    f"Invalid value: {show(value)}: "
                    f"{path} in body should be less than or equal to {_num(hi)}",
                )
        if "multipleOf" in schema and schema["multipleOf"] and (value / schema["multipleOf"]) % 1:
            bad(
                "FieldValueInvalid",
                f"Invalid value: {show(value)}: "
                f"{path} in body should be a multiple of {_num(schema['multipleOf'])}",
            )

    if isinstance(value, list):
        if "minItems" in schema and len(value) < schema["minItems"]:
            bad(
                "FieldValueInvalid",
                f"Invalid value: {len(value)}: "
                f"{path} in body should have at least {schema['minItems']} items",
            )
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            bad("FieldValueTooMany", f"Too many: {len(value)}: must have at most {schema['maxItems']} items")
        if schema.get("uniqueItems") or schema.get("x-kubernetes-list-type") == "set":
            seen: list[Any] = []
            for i, v in enumerate(value):
                if v in seen:
                    errs.append(Cause(f"{path}[{i}]", "FieldValueDuplicate", f"Duplicate value: {show(v)}"))
                seen.append(v)
        items = schema.get("items")
        if isinstance(items, dict):
            for i, v in enumerate(value):
                errs.extend(validate(v, items, f"{path}[{i}]"))

    if isinstance(value, dict) and not schema.get("x-kubernetes-int-or-string"):
        for req in schema.get("required") or []:
            if req not in value:
                errs.append(Cause(child(path, req), "FieldValueRequired", "Required value"))
        if "minProperties" in schema and len(value) < schema["minProperties"]:
            bad(
                "FieldValueInvalid",
                f"Invalid value: {len(value)}: "
                f"{path} in body should have at least {schema['minProperties']} properties",
            )
        if "maxProperties" in schema and len(value) > schema["maxProperties"]:
            bad(
                "FieldValueTooMany",
                f"Too many: {len(value)}: must have at most {schema['maxProperties']} items",
            )
        props = _props(schema)
        addl = schema.get("additionalProperties")
        for key, v in value.items():
            if not path and key in _ROOT_KEEP:
                continue
            if key in props:
                errs.extend(validate(v, props[key], child(path, key)))
            elif isinstance(addl, dict):
                errs.extend(validate(v, addl, child(path, key)))
    return errs


def _for_cel(value: Any, schema: dict[str, Any] | None) -> Any:
    """Convert a value into CEL's view: ``format: date-time`` strings become timestamps."""
    if schema is None:
        return value
    if isinstance(value, str) and schema.get("format") == "date-time" and _DATE_TIME.match(value):
        return datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    if isinstance(value, dict):
        props = _props(schema)
        addl = schema.get("additionalProperties")
        return {
            k: _for_cel(v, props.get(k) or (addl if isinstance(addl, dict) else None))
            for k, v in value.items()
        }
    if isinstance(value, list):
        items = schema.get("items")
        return [_for_cel(v, items if isinstance(items, dict) else None) for v in value]
    return value


_MISSING = object()
_WARNED: set[str] = set()


# Complexity kept: walks the schema and its transition rules together; each keyword is one branch.
def validate_rules(new: Any, old: Any, schema: dict[str, Any] | None, path: str = "") -> list[Cause]:  # noqa: C901
    """Evaluate ``x-kubernetes-validations`` at every node; ``old`` is the correlated old value or MISSING."""
    if schema is None or new is None:
        return []
    errs: list[Cause] = []
    for rule in schema.get("x-kubernetes-validations") or []:
        expr = rule.get("rule", "")
        uses_old = "oldSelf" in expr
        if uses_old and old is _MISSING:
            continue  # transition rules only run on update when the old value exists
        try:
            ok = cel.evaluate(expr, _for_cel(new, schema), _for_cel(old, schema) if uses_old else None)
        except cel.Unsupported as exc:
            if expr not in _WARNED:
                _WARNED.add(expr)
                log.warning("CEL rule not understood, accepting it: %r (%s)", expr, exc)
            continue
        except cel.EvalError as exc:
            errs.append(
                Cause(
                    path or "<nil>",
                    "FieldValueInvalid",
                    f"Invalid value: {show(new)}: {exc} evaluating rule: {expr}",
                )
            )
            continue
        if ok is not True:
            field = path
            if rule.get("fieldPath"):
                field = (
                    path + str(rule["fieldPath"])
                    if str(rule["fieldPath"]).startswith(".")
                    else rule["fieldPath"]
                )
                field = field.lstrip(".")
            field = field or "<nil>"  # the root's path prints as <nil> on the real server
            message = rule.get("message") or f"failed rule: {expr}"
            reason = rule.get("reason") or "FieldValueInvalid"
            if reason == "FieldValueForbidden":
                errs.append(Cause(field, reason, f"Forbidden: {message}"))
            elif reason == "FieldValueRequired":
                errs.append(Cause(field, reason, f"Required value: {message}"))
            elif reason == "FieldValueDuplicate":
                errs.append(Cause(field, reason, f"Duplicate value: {message}"))
            else:
                errs.append(Cause(field, "FieldValueInvalid", f"Invalid value: {show(new)}: {message}"))
    if isinstance(new, dict):
        props = _props(schema)
        addl = schema.get("additionalProperties")
        for key, v in new.items():
            if not path and key in _ROOT_KEEP:
                continue
            sub = props.get(key) or (addl if isinstance(addl, dict) else None)
            if sub is None:
                continue
            o = old.get(key, _MISSING) if isinstance(old, dict) else _MISSING
            errs.extend(validate_rules(v, o, sub, child(path, key)))
    elif isinstance(new, list) and isinstance(schema.get("items"), dict):
        for i, v in enumerate(new):
            errs.extend(validate_rules(v, _MISSING, schema["items"], f"{path}[{i}]"))
    return errs


MISSING = _MISSING
