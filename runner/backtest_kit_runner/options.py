"""Options of the runner process, from the command line and from ``BACKTEST_KIT_*`` variables.

The operator configures a runner pod through environment variables while a person at a shell uses
flags, so both are read into one frozen, validated model per subcommand (the command line wins).
Everything wrong with them is reported here, as one readable message, before any engine code runs:
the process then exits with code 2 and a trader never ticks on half-understood settings.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, get_args

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

ENV_PREFIX = "BACKTEST_KIT_"
DEFAULT_STATE_DIR = Path("/var/lib/backtest-kit")
DEFAULT_OUTPUT = Path("/dev/termination-log")
DEFAULT_HTTP_PORT = 8080
MAX_SPEED = 1_000_000.0

#: Walker metrics (ENGINE.md section 8 and "deliberately differ" 5).
WalkerMetric = Literal[
    "sharpeRatio",
    "annualizedSharpeRatio",
    "winRate",
    "totalPnl",
    "certaintyRatio",
    "avgPnl",
    "expectedYearlyReturns",
    "maxDrawdown",
    "totalTrades",
]
WALKER_METRICS: tuple[str, ...] = get_args(WalkerMetric)


class OptionsError(ValueError):
    """The options cannot be used; the message says which option and why."""


def _utc_datetime(value: object) -> object:
    """ISO text to an aware datetime; a value without an offset is taken as UTC."""
    if isinstance(value, str):
        text = value.strip()
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"{text!r} is not an ISO-8601 time (e.g. 2024-01-01T00:00:00Z)") from None
    if isinstance(value, datetime) and value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value


def _json_object(value: object) -> object:
    """A JSON object given as text (flag or variable) becomes a dict; anything else is refused."""
    if isinstance(value, str):
        text = value.strip() or "{}"
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not valid JSON ({exc.msg} at character {exc.pos})") from None
    if not isinstance(value, dict):
        raise ValueError('must be a JSON object, e.g. {} or {"fast": 5}')
    return value


def _replay_speed(value: object) -> object:
    """A positive number of simulated seconds per wall second, or ``max`` (as fast as possible)."""
    if isinstance(value, str) and value.strip().lower() == "max":
        return math.inf
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ValueError(f"{value!r} is neither a number nor 'max'") from None
    in_range = (
        value > 0 and (value <= MAX_SPEED or math.isinf(value)) if isinstance(value, int | float) else True
    )
    if not isinstance(value, bool) and not in_range:
        raise ValueError(f"must be greater than 0 and at most {MAX_SPEED:g}, or 'max'")
    return value


def _json_list(value: object) -> object:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not valid JSON ({exc.msg} at character {exc.pos})") from None
    return value


def _comma_list(value: object) -> object:
    """``a,b`` (a variable) or a repeated flag: a tuple of non-empty entries."""
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list | tuple):
        parts: list[object] = []
        for item in value:
            if isinstance(item, str):
                parts.extend(p.strip() for p in item.split(",") if p.strip())
            else:
                parts.append(item)
        return tuple(parts)
    return value


UtcDatetime = Annotated[datetime, BeforeValidator(_utc_datetime)]
JsonObject = Annotated[dict[str, Any], BeforeValidator(_json_object)]
ExchangeSettings = Annotated[dict[str, str | int | float], BeforeValidator(_json_object)]
ModuleList = Annotated[tuple[Annotated[str, Field(min_length=1)], ...], BeforeValidator(_comma_list)]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]
Name = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^\S+$")]


@dataclass(frozen=True)
class OptionSpec:
    """How one model field is spelled on the command line and in the environment."""

    field: str
    help: str
    env: str | None = None
    repeatable: bool = False
    metavar: str | None = None

    @property
    def flag(self) -> str:
        return "--" + self.field.replace("_", "-")

    @property
    def env_name(self) -> str:
        return self.env or ENV_PREFIX + self.field.upper()


class Frame(BaseModel):
    """A backtest time range ``START..END`` (both ends inclusive) stepped by ``interval``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    start: UtcDatetime
    end: UtcDatetime

    @model_validator(mode="after")
    def _ordered(self) -> Frame:
        if self.end <= self.start:
            raise ValueError(
                f"frame end {self.end.isoformat()} is not after its start {self.start.isoformat()}"
            )
        return self

    @classmethod
    def parse(cls, value: object) -> object:
        if isinstance(value, str):
            start, sep, end = value.partition("..")
            if not sep or not start.strip() or not end.strip():
                raise ValueError("must be START..END, e.g. 2024-01-01T00:00:00Z..2024-01-31T00:00:00Z")
            return {"start": start.strip(), "end": end.strip()}
        return value


FrameRange = Annotated[Frame, BeforeValidator(Frame.parse)]


class RunnerOptions(BaseModel):
    """Common base: frozen, no unknown fields, and the table of how each field is spelled."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    COMMAND: ClassVar[str] = ""
    SPECS: ClassVar[tuple[OptionSpec, ...]] = ()

    log_level: LogLevel = "INFO"

    def to_json(self) -> dict[str, Any]:
        """camelCase JSON of the options (``/status`` shows it as ``config``)."""
        return {_camel(k): v for k, v in self.model_dump(mode="json").items()}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.capitalize() for p in rest)


_LOG_LEVEL = OptionSpec("log_level", "DEBUG, INFO, WARNING or ERROR (default INFO)", metavar="LEVEL")
_SYMBOL = OptionSpec("symbol", "market symbol, e.g. BTCUSDT")
_STRATEGY = OptionSpec("strategy", "registered strategy name (built-in or from --load)")
_PARAMS = OptionSpec("params", "strategy parameters as a JSON object", metavar="JSON")
_EXCHANGE = OptionSpec("exchange", "synthetic (default), binance, csv:<path> or a registered name")
_EXCHANGE_OPTIONS = OptionSpec(
    "exchange_options",
    "JSON object of exchange settings: binance {baseUrl, requestTimeout, maxRetries}, csv {path}",
    metavar="JSON",
)
_LOAD = OptionSpec(
    "load",
    "module path or .py file to import before starting (repeatable; variable: comma separated)",
    repeatable=True,
    metavar="MODULE",
)
_EVENTS = OptionSpec("events", "append every yielded result as a JSON line to this file", metavar="FILE")
_FRAME = OptionSpec("frame", "backtest range START..END (ISO-8601, both ends inclusive)", metavar="RANGE")
_FRAME_INTERVAL = OptionSpec("frame_interval", "frame step (default 1m)")
_METRIC = OptionSpec("metric", f"statistic reported as metricValue: {', '.join(WALKER_METRICS)}")
_OUTPUT = OptionSpec("output", f"where the result JSON is written (default {DEFAULT_OUTPUT})", metavar="FILE")


class TraderOptions(RunnerOptions):
    """``live``: one live trader with its HTTP API."""

    COMMAND: ClassVar[str] = "live"
    SPECS: ClassVar[tuple[OptionSpec, ...]] = (
        _SYMBOL,
        _STRATEGY,
        _PARAMS,
        _EXCHANGE,
        _EXCHANGE_OPTIONS,
        _LOAD,
        OptionSpec(
            "state_dir", f"directory of durable live state (default {DEFAULT_STATE_DIR})", metavar="DIR"
        ),
        OptionSpec("replay_from", "replay history on a simulated clock starting at this time", metavar="ISO"),
        OptionSpec("speed", "simulated seconds per wall second when replaying (default 1; max)", metavar="N"),
        OptionSpec("until", "stop (exit 0) once the clock reaches this time", metavar="ISO"),
        _EVENTS,
        OptionSpec(
            "http_port", f"port of the HTTP API and /metrics (default {DEFAULT_HTTP_PORT})", metavar="PORT"
        ),
        OptionSpec("http_host", "address the HTTP API binds to (default 0.0.0.0)", metavar="HOST"),
        _LOG_LEVEL,
    )

    symbol: Name
    strategy: Name
    params: JsonObject = Field(default_factory=dict)
    exchange: Name = "synthetic"
    exchange_options: ExchangeSettings = Field(default_factory=dict)
    load: ModuleList = ()
    state_dir: Path = DEFAULT_STATE_DIR
    replay_from: UtcDatetime | None = None
    speed: Annotated[float, BeforeValidator(_replay_speed)] | None = None
    until: UtcDatetime | None = None
    events: Path | None = None
    http_port: int = Field(DEFAULT_HTTP_PORT, ge=0, le=65535)
    http_host: str = Field("0.0.0.0", min_length=1)

    @model_validator(mode="after")
    def _replay_consistent(self) -> TraderOptions:
        if self.speed is not None and self.replay_from is None:
            raise ValueError("--speed only applies to a replay; give --replay-from too")
        if self.until is not None and self.replay_from is not None and self.until <= self.replay_from:
            raise ValueError(
                f"--until {self.until.isoformat()} is not after --replay-from {self.replay_from.isoformat()}"
            )
        return self

    @property
    def replay_speed(self) -> float:
        return 1.0 if self.speed is None else self.speed


class BacktestOptions(RunnerOptions):
    """``backtest``: one strategy over a frame; the statistics go to ``--output``."""

    COMMAND: ClassVar[str] = "backtest"
    SPECS: ClassVar[tuple[OptionSpec, ...]] = (
        _SYMBOL,
        _STRATEGY,
        _PARAMS,
        _EXCHANGE,
        _EXCHANGE_OPTIONS,
        _LOAD,
        _FRAME,
        _FRAME_INTERVAL,
        _METRIC,
        _OUTPUT,
        _EVENTS,
        _LOG_LEVEL,
    )

    symbol: Name
    strategy: Name
    params: JsonObject = Field(default_factory=dict)
    exchange: Name = "synthetic"
    exchange_options: ExchangeSettings = Field(default_factory=dict)
    load: ModuleList = ()
    frame: FrameRange
    frame_interval: Name = "1m"
    metric: WalkerMetric = "sharpeRatio"
    output: Path = DEFAULT_OUTPUT
    events: Path | None = None


class WalkerTask(BaseModel):
    """One entry of ``BACKTEST_KIT_TASKS``: a strategy (with parameters) the Walker compares."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    label: Name
    strategy: Name
    params: JsonObject = Field(default_factory=dict)


class WalkerTaskOptions(RunnerOptions):
    """``walker-task``: the task at ``JOB_COMPLETION_INDEX`` of an indexed Kubernetes Job."""

    COMMAND: ClassVar[str] = "walker-task"
    SPECS: ClassVar[tuple[OptionSpec, ...]] = (
        OptionSpec("tasks", "JSON list of {label, strategy, params}", metavar="JSON"),
        OptionSpec(
            "job_completion_index",
            "which task to run (set by an indexed Job)",
            env="JOB_COMPLETION_INDEX",
            metavar="N",
        ),
        _SYMBOL,
        _EXCHANGE,
        _EXCHANGE_OPTIONS,
        _LOAD,
        _FRAME,
        _FRAME_INTERVAL,
        _METRIC,
        _OUTPUT,
        _LOG_LEVEL,
    )

    tasks: Annotated[tuple[WalkerTask, ...], BeforeValidator(_json_list), Field(min_length=1)]
    job_completion_index: int = Field(ge=0)
    symbol: Name
    exchange: Name = "synthetic"
    exchange_options: ExchangeSettings = Field(default_factory=dict)
    load: ModuleList = ()
    frame: FrameRange
    frame_interval: Name = "1m"
    metric: WalkerMetric = "sharpeRatio"
    output: Path = DEFAULT_OUTPUT

    @model_validator(mode="after")
    def _index_in_range(self) -> WalkerTaskOptions:
        if self.job_completion_index >= len(self.tasks):
            raise ValueError(
                f"JOB_COMPLETION_INDEX {self.job_completion_index} is out of range: "
                f"there are {len(self.tasks)} tasks"
            )
        return self

    @property
    def task(self) -> WalkerTask:
        return self.tasks[self.job_completion_index]


COMMANDS: dict[str, type[RunnerOptions]] = {
    cls.COMMAND: cls for cls in (TraderOptions, BacktestOptions, WalkerTaskOptions)
}
DEFAULT_COMMAND = TraderOptions.COMMAND


class _ArgumentParser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so every bad option takes the same path."""

    def error(self, message: str) -> Any:  # argparse's signature is NoReturn
        raise OptionsError(f"{self.prog}: {message}")


def build_parser(prog: str = "python -m backtest_kit_runner") -> argparse.ArgumentParser:
    parser = _ArgumentParser(
        prog=prog,
        description=(
            "Run one live trader with an HTTP API (live, the default), one backtest, or one Walker task. "
            f"Every option can also be given as {ENV_PREFIX}<OPTION> (upper case, '-' -> '_'); "
            "the command line wins."
        ),
    )
    sub = parser.add_subparsers(dest="command", metavar="{live,backtest,walker-task}")
    for name, cls in COMMANDS.items():
        cmd = sub.add_parser(name, help=(cls.__doc__ or "").strip().splitlines()[0], description=cls.__doc__)
        for spec in cls.SPECS:
            cmd.add_argument(
                spec.flag,
                dest=spec.field,
                action="append" if spec.repeatable else "store",
                default=argparse.SUPPRESS,
                metavar=spec.metavar,
                help=f"{spec.help} [env {spec.env_name}]",
            )
    return parser


def _with_default_command(argv: Sequence[str]) -> list[str]:
    args = list(argv)
    if args and (args[0] in COMMANDS or args[0] in ("-h", "--help")):
        return args
    return [DEFAULT_COMMAND, *args]


def parse_options(argv: Sequence[str], environ: Mapping[str, str]) -> RunnerOptions:
    """The validated options of the subcommand in ``argv`` (variables from ``environ``).

    Raises :class:`OptionsError` with a message naming the option, its flag and variable.
    ``-h``/``--help`` print the help and raise ``SystemExit(0)`` as usual.
    """
    parser = build_parser()
    namespace = parser.parse_args(_with_default_command(argv))
    cls = COMMANDS[namespace.command]
    given: dict[str, Any] = {k: v for k, v in vars(namespace).items() if k != "command"}
    raw: dict[str, Any] = {}
    source: dict[str, str] = {}
    for spec in cls.SPECS:
        if spec.field in given:
            raw[spec.field] = given[spec.field]
            source[spec.field] = spec.flag
        elif environ.get(spec.env_name, "").strip():
            raw[spec.field] = environ[spec.env_name]
            source[spec.field] = spec.env_name
    try:
        return cls.model_validate(raw)
    except ValidationError as exc:
        raise OptionsError(_explain(cls, exc, source)) from None


def _explain(cls: type[RunnerOptions], exc: ValidationError, source: Mapping[str, str]) -> str:
    specs = {s.field: s for s in cls.SPECS}
    lines = [f"invalid options for '{cls.COMMAND}':"]
    for err in exc.errors(include_url=False):
        loc = err.get("loc", ())
        field = str(loc[0]) if loc else ""
        message = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        spec = specs.get(field)
        if spec is None:
            lines.append(f"  {message}")
            continue
        where = ".".join(str(p) for p in loc[1:])
        spelled = f"{spec.flag} / {spec.env_name}"
        if err.get("type") == "missing":
            lines.append(f"  {spelled}: required, not given")
        else:
            given_by = source.get(field, "default")
            suffix = f" at {where}" if where else ""
            lines.append(f"  {spelled}{suffix}: {message} (given by {given_by})")
    return "\n".join(lines)
