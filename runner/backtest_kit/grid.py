"""Parameter grids: the axes a person writes, the members they expand to, and the members' names.

A grid is how a parametrised strategy is searched: ``fast=3,5,8,10 slow=20..50:10`` (the command
line) or ``{"fast": [3, 5, 8, 10], "slow": {"from": 20, "to": 50, "step": 10}}`` (a Walker
object, a notebook) both mean the 16 members of the cartesian product, in axis order, last axis
fastest. The command line, the notebook API and the operator all expand grids here, so a member
has the same parameters and the same name everywhere: ``sma-cross[fast=3,slow=20]`` (the grid's
axes in the order written). Ranges include their end when a step lands on it; integers stay
integers, a range with a fractional bound or step counts in exact decimals (``0.1..0.3:0.1`` is
``0.1, 0.2, 0.3``). Everything wrong with a grid is reported at once, axis by axis, as a
:class:`~backtest_kit.errors.ConfigurationError`.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from .errors import ConfigurationError

Scalar = int | float | str | bool
#: At most this many members in one grid (a larger search is a mistake more often than a plan).
MAX_MEMBERS = 10_000
_AXIS_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_INT = re.compile(r"^[+-]?\d+$")


class GridError(ConfigurationError):
    """The grid cannot be expanded; the message names every bad axis."""


@dataclass(frozen=True)
class Grid:
    """Named axes, each a tuple of values; :meth:`members` is their cartesian product."""

    axes: tuple[tuple[str, tuple[Scalar, ...]], ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.axes)

    def __len__(self) -> int:
        size = 1
        for _, values in self.axes:
            size *= len(values)
        return size

    def members(self) -> list[dict[str, Scalar]]:
        """Every combination, in axis order (the last axis changes fastest)."""
        names = self.names
        return [
            dict(zip(names, combo, strict=True)) for combo in itertools.product(*(v for _, v in self.axes))
        ]

    def __iter__(self) -> Iterator[dict[str, Scalar]]:
        return iter(self.members())

    def to_text(self) -> str:
        """The command-line form (values listed), which :func:`parse_grid` reads back."""
        return " ".join(f"{name}={','.join(format_value(v) for v in values)}" for name, values in self.axes)


def format_value(value: Scalar) -> str:
    """A value as a member name shows it: ``3``, ``0.5``, ``true``, ``15m``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


def member_label(strategy: str, params: Mapping[str, Any], axes: Sequence[str] | None = None) -> str:
    """The member's name: ``strategy[axis=value,...]`` over ``axes`` (default: every key, in order)."""
    keys = list(params) if axes is None else list(axes)
    return f"{strategy}[{','.join(f'{k}={format_value(params[k])}' for k in keys)}]"


def shards(count: int, parts: int) -> list[list[int]]:
    """Member indices ``0..count-1`` dealt round-robin into ``parts`` shares (index ``i`` gets
    ``i, i+parts, ...``): neighbouring members, which cost about the same, land in different shares."""
    if parts < 1:
        raise ConfigurationError(f"a grid is split into at least one share, got {parts}")
    return [list(range(i, count, parts)) for i in range(min(parts, max(count, 1)))]


# -- parsing -----------------------------------------------------------------------------------------


def _scalar(text: str) -> Scalar:
    raw = text.strip()
    if _INT.match(raw):
        return int(raw)
    lowered = raw.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        value = float(raw)
    except ValueError:
        return raw
    return value if raw.lower() not in ("nan", "inf", "-inf", "+inf", "infinity") else raw


def _decimal(value: object) -> Decimal:
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a number")
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"{value!r} is not a number") from None
    if not number.is_finite():
        raise ValueError(f"{value!r} is not a finite number")
    return number


def expand_range(start: object, stop: object, step: object = 1) -> tuple[Scalar, ...]:
    """``start, start+step, ...`` up to ``stop`` (included when a step lands on it)."""
    a, b, s = _decimal(start), _decimal(stop), _decimal(step)
    if s <= 0:
        raise ValueError(f"the step must be positive, got {step}")
    if b < a:
        raise ValueError(f"the range ends ({stop}) before it starts ({start})")
    count = int((b - a) / s) + 1
    if count > MAX_MEMBERS:
        raise ValueError(f"the range has {count:,} values (at most {MAX_MEMBERS:,})")
    integral = all(x == x.to_integral_value() and "." not in str(v) for x, v in ((a, start), (s, step)))
    values = [a + i * s for i in range(count)]
    if integral:
        return tuple(int(v) for v in values)
    return tuple(float(v) for v in values)


def _axis_text(text: str) -> tuple[str, tuple[Scalar, ...]]:
    name, sep, body = text.partition("=")
    name = name.strip()
    if not sep:
        raise ValueError("must be NAME=V1,V2,... or NAME=FROM..TO[:STEP]")
    if not body.strip():
        raise ValueError("has no values")
    if ".." in body:
        bounds, _, step = body.partition(":")
        start, _, stop = bounds.partition("..")
        if not start.strip() or not stop.strip():
            raise ValueError(f"{body!r}: a range is FROM..TO[:STEP], e.g. 20..50:10")
        return name, expand_range(start, stop, step if step.strip() else 1)
    parts = [p.strip() for p in body.split(",")]
    if any(not p for p in parts):
        raise ValueError(f"{body!r} has an empty value")
    return name, tuple(_scalar(p) for p in parts)


def _axis_value(value: object) -> tuple[Scalar, ...]:
    """One axis of the mapping form: a list of values, ``{values: [...]}`` or ``{from, to, step}``."""
    if isinstance(value, Mapping):
        keys = set(value)
        if keys == {"values"}:
            return _axis_value(value["values"])
        if {"from", "to"} <= keys <= {"from", "to", "step"}:
            return expand_range(value["from"], value["to"], value.get("step", 1))
        raise ValueError("must be a list of values, {values: [...]} or {from, to, step}")
    if isinstance(value, str):
        return _axis_text(f"_={value}")[1]
    if isinstance(value, Sequence) and not isinstance(value, bytes):
        if not value:
            raise ValueError("has no values")
        for item in value:
            if not isinstance(item, int | float | str | bool):
                raise ValueError(f"{item!r} is not a number, a string or a boolean")
        return tuple(value)
    if isinstance(value, int | float | bool):
        return (value,)
    raise ValueError(f"{value!r} is not a list of values or a range")


def _checked(axes: list[tuple[str, tuple[Scalar, ...]]], problems: list[str]) -> Grid:
    seen: set[str] = set()
    for name, values in axes:
        if not _AXIS_NAME.match(name):
            problems.append(f"axis {name!r}: the name must be a parameter name (letters, digits, _)")
        if name in seen:
            problems.append(f"axis {name!r} is given twice")
        seen.add(name)
        if len(set(map(repr, values))) != len(values):
            problems.append(f"axis {name!r} repeats a value")
    grid = Grid(tuple(axes))
    if not axes and not problems:
        problems.append("the grid has no axes; give NAME=VALUES, e.g. fast=3,5,8 slow=20..50:10")
    if not problems and len(grid) > MAX_MEMBERS:
        problems.append(f"the grid has {len(grid):,} members (at most {MAX_MEMBERS:,})")
    if problems:
        raise GridError("invalid grid:\n" + "\n".join(f"  {p}" for p in problems))
    return grid


def parse_grid(text: str) -> Grid:
    """The command-line form: space-separated axes ``name=v1,v2`` or ``name=a..b:step``."""
    axes: list[tuple[str, tuple[Scalar, ...]]] = []
    problems: list[str] = []
    for part in text.split():
        try:
            axes.append(_axis_text(part))
        except ValueError as exc:
            problems.append(f"axis {part!r}: {exc}")
    return _checked(axes, problems)


def grid_from(value: Grid | str | Mapping[str, Any]) -> Grid:
    """A grid from any of its forms: a :class:`Grid`, the text form, or ``{axis: values}``."""
    if isinstance(value, Grid):
        return value
    if isinstance(value, str):
        return parse_grid(value)
    if not isinstance(value, Mapping):
        raise GridError(f"a grid is text or a mapping of axes, got {type(value).__name__}")
    axes: list[tuple[str, tuple[Scalar, ...]]] = []
    problems: list[str] = []
    for name, axis in value.items():
        try:
            axes.append((str(name), _axis_value(axis)))
        except ValueError as exc:
            problems.append(f"axis {name!r}: {exc}")
    return _checked(axes, problems)
