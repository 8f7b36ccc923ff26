"""Typed, frozen views of the LiveTrader and Walker specs.

The API server already validates objects against the CRD schema, but the operator must not trust
that alone: a CRD installed from an older release, a schema without defaults, or a hand-edited
object could still reach it. Parsing every spec into these models (camelCase aliases, unknown
fields refused) gives the manifest builders one well-typed input and turns a bad spec into a
single readable message that the handlers raise as ``kopf.PermanentError``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    AliasGenerator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from pydantic.alias_generators import to_camel

if TYPE_CHECKING:
    from backtest_kit.grid import Grid

    GridOrNone = Grid | None
else:
    # The engine's tables and grid rules are imported where a Walker spec is parsed, not here:
    # importing ``backtest_kit`` loads the whole engine (numpy included), which an operator that
    # only serves LiveTraders never needs. pydantic only sees the validator's result.
    GridOrNone = Any

SYMBOL_PATTERN = r"^[A-Z0-9]{2,20}$"
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"
QUANTITY_PATTERN = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$"

#: A Walker's grid may have at most this many members, and a Job index runs at most this many
#: of them (so their results fit one 4096-byte termination message).
MAX_GRID_MEMBERS = 512
GRID_MEMBERS_PER_TASK = 8

ExchangeName = Literal["synthetic", "binance", "csv"]
PullPolicy = Literal["Always", "IfNotPresent", "Never"]
ReclaimPolicy = Literal["Retain", "Delete"]


def _frame_interval(value: object) -> str:
    from backtest_kit.candles import FRAME_INTERVALS

    if not isinstance(value, str) or value not in FRAME_INTERVALS:
        raise ValueError(f"unknown frame interval {value!r}; allowed: {', '.join(FRAME_INTERVALS)}")
    return value


#: What a frame may step by, and what a Walker may rank by: the engine's own tables, so a spec the
#: operator accepts is one the runner accepts (the CRD enums are generated from the same tables).
def _metric_name(value: object) -> str:
    from backtest_kit.metrics import check_metric_name

    return check_metric_name(value)


def _default_metric() -> str:
    from backtest_kit.metrics import DEFAULT_METRIC

    return DEFAULT_METRIC


Interval = Annotated[str, BeforeValidator(_frame_interval)]
WalkerMetric = Annotated[str, BeforeValidator(_metric_name)]


class SpecError(ValueError):
    """The spec cannot be run as written; the message names the field and the reason."""


class SpecModel(BaseModel):
    """Base of every spec part: frozen, camelCase on the wire, unknown fields refused."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        alias_generator=AliasGenerator(validation_alias=to_camel, serialization_alias=to_camel),
        populate_by_name=True,
    )


class ConfigMapKey(SpecModel):
    name: str = Field(min_length=1, max_length=253)
    key: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,250}\.py$")


class StrategyModule(SpecModel):
    """Where strategy code comes from: a ``.py`` file in a ConfigMap, or an importable module."""

    config_map: ConfigMapKey | None = None
    python: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")

    @model_validator(mode="after")
    def _exactly_one(self) -> StrategyModule:
        if (self.config_map is None) == (self.python is None):
            raise ValueError("module needs exactly one of configMap, python")
        return self


class Strategy(SpecModel):
    name: str = Field(pattern=NAME_PATTERN)
    parameters: dict[str, Any] = Field(default_factory=dict)
    module: StrategyModule | None = None


class Exchange(SpecModel):
    name: ExchangeName
    options: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _csv_has_path(self) -> Exchange:
        if self.name == "csv" and not self.options.get("path"):
            raise ValueError("exchange csv needs options.path")
        return self

    @property
    def runner_argument(self) -> str:
        """The runner's ``--exchange`` value (``csv:<path>`` for csv)."""
        if self.name == "csv":
            return f"csv:{self.options['path']}"
        return self.name


class Replay(SpecModel):
    from_: datetime = Field(alias="from")
    speed: float = Field(1.0, gt=0, le=1_000_000)
    until: datetime | None = None

    @model_validator(mode="after")
    def _until_after_from(self) -> Replay:
        if self.until is not None and self.until <= self.from_:
            raise ValueError("replay.until must be after replay.from")
        return self


class Storage(SpecModel):
    size: str = Field("1Gi", pattern=QUANTITY_PATTERN)
    storage_class_name: str | None = None
    reclaim_policy: ReclaimPolicy = "Retain"


class Resources(SpecModel):
    requests: dict[str, int | str] = Field(default_factory=dict)
    limits: dict[str, int | str] = Field(default_factory=dict)


class Runner(SpecModel):
    image: str | None = Field(None, min_length=1)
    image_pull_policy: PullPolicy | None = None
    resources: Resources | None = None


class LiveTraderSpec(SpecModel):
    symbol: str = Field(pattern=SYMBOL_PATTERN)
    strategy: Strategy
    exchange: Exchange
    replay: Replay | None = None
    storage: Storage = Storage.model_validate({})
    runner: Runner = Runner.model_validate({})
    paused: bool = False
    """No new signal opens while true (an open one is still watched); applied over the runner's
    HTTP API, never by replacing the pod, so it is not part of the pod's spec hash."""


class Frame(SpecModel):
    start: datetime
    end: datetime
    interval: Interval = "1m"

    @model_validator(mode="after")
    def _end_after_start(self) -> Frame:
        if self.end <= self.start:
            raise ValueError("frame.end must be after frame.start")
        return self


class WalkerStrategy(SpecModel):
    name: str = Field(pattern=NAME_PATTERN)
    label: str | None = Field(None, pattern=NAME_PATTERN)
    parameters: dict[str, Any] = Field(default_factory=dict)

    @property
    def effective_label(self) -> str:
        return self.label or self.name


@dataclass(frozen=True)
class WalkerEntry:
    """One backtest a Walker ranks: a ``strategies`` entry, or one member of ``grid``."""

    label: str
    name: str
    parameters: Mapping[str, Any]


def _grid(value: object) -> object:
    """``spec.grid`` is expanded by the engine's grid rules (the runner's ``--grid`` uses them too)."""
    from backtest_kit.grid import GridError, grid_from

    if value is None:
        return None
    try:
        grid = grid_from(value)  # type: ignore[arg-type]
    except GridError as exc:
        raise ValueError(str(exc).removeprefix("invalid grid:").strip().replace("\n  ", "; ")) from None
    if len(grid) > MAX_GRID_MEMBERS:
        raise ValueError(f"the grid has {len(grid):,} members; a Walker runs at most {MAX_GRID_MEMBERS}")
    return grid


class WalkerSpec(SpecModel):
    symbol: str = Field(pattern=SYMBOL_PATTERN)
    exchange: Exchange
    frame: Frame
    strategies: tuple[WalkerStrategy, ...] = Field(min_length=1, max_length=128)
    grid: Annotated[GridOrNone, BeforeValidator(_grid)] = None
    """Every combination of these parameter values of the one ``strategies`` entry (whose
    ``parameters`` are the fixed ones) is one member; the Job's indices split the members."""
    module: StrategyModule | None = None
    metric: WalkerMetric = Field(default_factory=_default_metric)
    parallelism: int = Field(2, ge=1, le=64)
    runner: Runner = Runner.model_validate({})

    @model_validator(mode="after")
    def _grid_varies_one_strategy(self) -> WalkerSpec:
        if self.grid is not None and len(self.strategies) != 1:
            raise ValueError(
                f"a grid varies one strategy: strategies has {len(self.strategies)} entries, give exactly one"
            )
        return self

    @property
    def entries(self) -> tuple[WalkerEntry, ...]:
        """What the Walker ranks, in order: its strategies, or its grid's members."""
        from backtest_kit.grid import member_label

        if self.grid is None:
            return tuple(WalkerEntry(s.effective_label, s.name, dict(s.parameters)) for s in self.strategies)
        (base,) = self.strategies
        return tuple(
            WalkerEntry(
                member_label(base.name, values, self.grid.names), base.name, {**base.parameters, **values}
            )
            for values in self.grid.members()
        )

    @property
    def task_shards(self) -> int | None:
        """How many Job indices share a grid's members (None: one index per strategy).

        At least ``parallelism`` (every pod busy) and few enough members per index that their
        results fit one termination message."""
        if self.grid is None:
            return None
        count = len(self.grid)
        return min(count, max(self.parallelism, -(-count // GRID_MEMBERS_PER_TASK)))

    def shares(self) -> list[list[int]]:
        """The entry indices each Job index runs (one each without a grid)."""
        from backtest_kit.grid import shards

        count = len(self.entries)
        parts = self.task_shards
        return [[i] for i in range(count)] if parts is None else shards(count, parts)

    @model_validator(mode="after")
    def _labels_unique(self) -> WalkerSpec:
        seen: set[str] = set()
        for entry in self.strategies:
            if entry.effective_label in seen:
                raise ValueError(
                    f"strategy label {entry.effective_label!r} is used twice "
                    "(labels default to the strategy name; give each entry its own label)"
                )
            seen.add(entry.effective_label)
        return self


_LOCATION_RE = re.compile(r"\.?\b(from_)\b")


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False):
        where = ".".join(str(p) for p in err.get("loc", ()))
        where = _LOCATION_RE.sub(lambda m: m.group(0).replace("from_", "from"), where)
        message = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"spec.{where}: {message}" if where else message)
    return "; ".join(parts)


def parse_trader_spec(spec: Mapping[str, Any]) -> LiveTraderSpec:
    """The LiveTrader spec as a model; raises :class:`SpecError` naming every problem."""
    try:
        return LiveTraderSpec.model_validate(dict(spec))
    except ValidationError as exc:
        raise SpecError(_describe(exc)) from exc


def parse_walker_spec(spec: Mapping[str, Any]) -> WalkerSpec:
    """The Walker spec as a model; raises :class:`SpecError` naming every problem."""
    try:
        return WalkerSpec.model_validate(dict(spec))
    except ValidationError as exc:
        raise SpecError(_describe(exc)) from exc
