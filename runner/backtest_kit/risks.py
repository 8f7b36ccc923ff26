"""Risk profiles at work: the positions open under each profile and the check before a signal.

Positions are counted across every strategy that shares a profile (key
``strategy_exchange_symbol``), and a check that passes reserves the slot in the same step, so two
strategies cannot both take the last one. Each engine keeps one book, shared by its runs.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

from .registry import RiskSchema


@dataclass
class RiskBook:
    """Open positions per risk profile name."""

    positions: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)

    def active(self, risk: str) -> dict[str, dict[str, Any]]:
        return self.positions.setdefault(risk, {})

    async def check(self, schema: RiskSchema, payload: dict[str, Any]) -> str | None:
        """Run every validation; the first rejection's note, or ``None`` when all pass."""
        active = self.active(schema.name)
        payload = {
            **payload,
            "riskName": schema.name,
            "activePositionCount": len(active),
            "activePositions": list(active.values()),
        }
        for v in schema.validations:
            try:
                out = v.validate(payload)
                if inspect.isawaitable(out):
                    out = await out
            except Exception as exc:
                return str(exc) or v.note or type(exc).__name__
            if out is None or out is True or out == "":
                continue
            if isinstance(out, str):
                return out
            if isinstance(out, dict):
                return str(out.get("note") or v.note or "rejected")
            if out is False:
                return v.note or "rejected"
        return None

    def reserve(self, risk: str, key: str, info: dict[str, Any]) -> None:
        self.active(risk)[key] = info

    def release(self, risk: str, key: str) -> None:
        self.active(risk).pop(key, None)
