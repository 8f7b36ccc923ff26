"""Label and field selectors with the real server's syntax (``a=b``, ``a!=b``, ``a in (x,y)``, ``!a`` ...)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from .errors import bad_request

Predicate = Callable[[dict[str, Any]], bool]

_KEY = r"[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?"


def _split_top(expr: str) -> list[str]:
    """Split on commas that are not inside parentheses."""
    parts, depth, cur = [], 0, ""
    for ch in expr:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return [p.strip() for p in parts if p.strip()]


def _set_check(key: str, values: set[str], inside: bool) -> Predicate:
    def check(labels: dict[str, Any]) -> bool:
        return (key in labels and labels[key] in values) == inside

    return check


def _eq_check(key: str, value: str, equal: bool) -> Predicate:
    def check(labels: dict[str, Any]) -> bool:
        return (labels.get(key) == value) == equal

    return check


def _exists_check(key: str, negated: bool) -> Predicate:
    def check(labels: dict[str, Any]) -> bool:
        return (key in labels) != negated

    return check


def _field_check(path: str, value: str, equal: bool) -> Predicate:
    def check(obj: dict[str, Any]) -> bool:
        return (field_value(obj, path) == value) == equal

    return check


def parse_label_selector(expr: str | None) -> Predicate:
    if not expr:
        return lambda labels: True
    checks: list[Predicate] = []
    for req in _split_top(expr):
        m = re.fullmatch(rf"({_KEY})\s+(in|notin)\s+\(([^)]*)\)", req)
        if m:
            key, op = m.group(1), m.group(3)
            values = {v.strip() for v in m.group(4).split(",") if v.strip()}
            checks.append(_set_check(key, values, op == "in"))
            continue
        m = re.fullmatch(rf"({_KEY})\s*(==|!=|=)\s*([-A-Za-z0-9_./]*)", req)
        if m:
            key, op, value = m.group(1), m.group(3), m.group(4)
            checks.append(_eq_check(key, value, op != "!="))
            continue
        m = re.fullmatch(rf"(!?)\s*({_KEY})", req)
        if m:
            neg, key = m.group(1) == "!", m.group(2)
            checks.append(_exists_check(key, neg))
            continue
        raise bad_request(f"unable to parse requirement: invalid label selector {req!r}")
    return lambda labels: all(c(labels) for c in checks)


def field_value(obj: dict[str, Any], path: str) -> str:
    cur: Any = obj
    for part in path.split("."):
        if not isinstance(cur, dict):
            return ""
        cur = cur.get(part)
    if cur is None:
        return ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return str(cur)


def parse_field_selector(expr: str | None, allowed: list[str]) -> Predicate:
    if not expr:
        return lambda obj: True
    checks: list[Predicate] = []
    ok = {"metadata.name", "metadata.namespace", *allowed}
    for req in _split_top(expr):
        m = re.fullmatch(r"([A-Za-z0-9_.]+)\s*(==|!=|=)\s*(.*)", req)
        if not m:
            raise bad_request(f"invalid selector: '{expr}'; can't understand '{req}'")
        key, op, value = m.group(1), m.group(2), m.group(3).strip()
        if key not in ok:
            raise bad_request(f"field label not supported: {key}")
        checks.append(_field_check(key, value, op != "!="))
    return lambda obj: all(c(obj) for c in checks)
