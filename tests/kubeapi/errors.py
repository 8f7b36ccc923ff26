"""Kubernetes ``Status`` error bodies: clients see the codes, reasons and messages of a real server."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

REASONS = {
    400: "BadRequest",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    409: "Conflict",
    410: "Gone",
    415: "UnsupportedMediaType",
    422: "Invalid",
    500: "InternalError",
}


@dataclass
class Cause:
    """One field-level problem (``details.causes[]``)."""

    field: str
    reason: str
    message: str

    def to_json(self) -> dict[str, str]:
        return {"reason": self.reason, "message": self.message, "field": self.field}

    def full(self) -> str:
        """The cause as it appears inside the top-level message: ``field: message``."""
        return f"{self.field}: {self.message}" if self.field else self.message


@dataclass
class ApiError(Exception):
    """An error that is answered with a ``Status`` body."""

    code: int
    message: str
    reason: str = ""
    name: str = ""
    group: str = ""
    kind: str = ""
    causes: list[Cause] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.reason:
            self.reason = REASONS.get(self.code, "Unknown")
        super().__init__(self.message)

    def status(self) -> dict[str, Any]:
        return status_body(
            self.code,
            self.reason,
            self.message,
            name=self.name,
            group=self.group,
            kind=self.kind,
            causes=self.causes,
        )


def status_body(
    code: int,
    reason: str,
    message: str,
    *,
    name: str = "",
    group: str = "",
    kind: str = "",
    causes: list[Cause] | None = None,
    success: bool = False,
) -> dict[str, Any]:
    details: dict[str, Any] = {}
    if name:
        details["name"] = name
    if group:
        details["group"] = group
    if kind:
        details["kind"] = kind
    if causes:
        details["causes"] = [c.to_json() for c in causes]
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success" if success else "Failure",
        "code": code,
    }
    if message:
        body["message"] = message
    if reason:
        body["reason"] = reason
    if details:
        body["details"] = details
    return body


def qualified(plural: str, group: str) -> str:
    """``livetraders.backtestkit.dev`` / ``pods`` as used in NotFound/AlreadyExists/Conflict messages."""
    return f"{plural}.{group}" if group else plural


def not_found(plural: str, group: str, name: str) -> ApiError:
    return ApiError(
        404, f'{qualified(plural, group)} "{name}" not found', name=name, group=group, kind=plural
    )


def already_exists(plural: str, group: str, name: str) -> ApiError:
    return ApiError(
        409, f'{qualified(plural, group)} "{name}" already exists', "AlreadyExists", name, group, plural
    )


def conflict(plural: str, group: str, name: str, why: str) -> ApiError:
    return ApiError(
        409,
        f'Operation cannot be fulfilled on {qualified(plural, group)} "{name}": {why}',
        "Conflict",
        name,
        group,
        plural,
    )


def invalid(kind: str, group: str, name: str, causes: list[Cause]) -> ApiError:
    """422 laid out like the real server: ``Kind.group "name" is invalid: f: msg`` or ``[f1: m1, f2: m2]``."""
    what = f"{kind}.{group}" if group else kind
    if len(causes) == 1:
        detail = causes[0].full()
    else:
        detail = "[" + ", ".join(c.full() for c in causes) + "]"
    return ApiError(422, f'{what} "{name}" is invalid: {detail}', "Invalid", name, group, kind, causes)


def bad_request(message: str) -> ApiError:
    return ApiError(400, message, "BadRequest")


def expired(message: str) -> ApiError:
    """410 for a resourceVersion that fell out of the history window (reason ``Expired``, like k8s)."""
    return ApiError(410, message, "Expired")
