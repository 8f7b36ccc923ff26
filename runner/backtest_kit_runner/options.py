"""Every option of the ``backtest-kit`` command line, from flags and from ``BACKTEST_KIT_*`` variables.

The operator configures a runner pod through environment variables while a person at a shell uses
flags, so both are read into one frozen, validated model per command (the command line wins).
Each option is spelled once, in :data:`OPTIONS` (flag, variable, help, choices); its type and
default are the model field of the same name, so help, parsing and validation cannot drift apart
between commands. Everything wrong with the options is reported here, as one readable message
naming the flag and the variable, before any engine code runs: the process then exits with code 2
and a trader never ticks on half-understood settings.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, get_args

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import PydanticUndefined

from backtest_kit.candles import FRAME_INTERVALS
from backtest_kit.grid import Grid, shards
from backtest_kit.metrics import METRIC_NAMES, check_metric_name

ENV_PREFIX = "BACKTEST_KIT_"
DEFAULT_STATE_DIR = Path("/var/lib/backtest-kit")
#: Where a pod's result goes (``walker-task``): the operator reads it as the termination message.
DEFAULT_OUTPUT = Path("/dev/termination-log")
DEFAULT_HTTP_PORT = 8080
MAX_SPEED = 1_000_000.0

#: Walker metrics: the engine's names (``backtest_kit.metrics``), checked before any run starts.
WalkerMetric = Annotated[str, BeforeValidator(check_metric_name)]
WALKER_METRICS: tuple[str, ...] = METRIC_NAMES
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]
LOG_LEVELS: tuple[str, ...] = get_args(LogLevel)
#: The kinds of ``--exchange`` the runner builds itself (see :mod:`.exchange_setup`).
EXCHANGE_KINDS: tuple[str, ...] = ("synthetic", "csv:<path>", "binance[:URL]", "ccxt:<exchange id>")
CHART_SUFFIXES: tuple[str, ...] = (".html", ".png", ".svg")
#: Strategies that need no --load: the engine's built-ins and the runner's parametrised examples
#: (a test keeps this list equal to both).
BUILTIN_STRATEGIES: tuple[str, ...] = (
    "a_long_tp1_sl1",
    "c_limit_sched",
    "d_sma_cross",
    "g_risk_even_hours",
    "sma-cross",
    "momentum",
)


class OptionsError(ValueError):
    """The options cannot be used; the message says which option and why."""


# -- value parsers (pydantic before-validators) -----------------------------------------------------


def parse_time(text: str, *, end: bool = False) -> datetime:
    """ISO-8601 (``Z`` allowed, no offset means UTC); a bare date is its first minute, or its last
    (``23:59``) when ``end``, so ``2024-01-01..2024-01-30`` covers both days whole."""
    raw = text.strip()
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"{raw!r} is not an ISO-8601 time (e.g. 2024-01-01T00:00:00Z)") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    if end and len(raw) == len("2024-01-01"):
        value += timedelta(days=1, minutes=-1)
    return value


def _utc_datetime(value: object) -> object:
    return parse_time(value) if isinstance(value, str) else value


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


def _exchange(value: object) -> object:
    """The ``--exchange`` syntax is checked now; whether a registered name exists, after ``--load``."""
    if isinstance(value, str) and value.strip() != "csv":  # bare csv: the path is in --exchange-options
        from backtest_kit.errors import ConfigurationError

        from .exchange_setup import ExchangeSpec

        try:
            ExchangeSpec.parse(value)
        except ConfigurationError as exc:
            raise ValueError(str(exc)) from None
        return value.strip()
    return value


def _frame_interval(value: object) -> object:
    if isinstance(value, str) and value.strip() not in FRAME_INTERVALS:
        raise ValueError(f"unknown frame interval {value.strip()!r}; allowed: {', '.join(FRAME_INTERVALS)}")
    return value


def _chart(value: object) -> object:
    if isinstance(value, str | Path) and Path(value).suffix.lower() not in (*CHART_SUFFIXES, ".htm"):
        raise ValueError(
            f"{str(value)!r}: the chart is written as {', '.join(CHART_SUFFIXES)} "
            "(.html is interactive; .png and .svg need kaleido)"
        )
    return value


UtcDatetime = Annotated[datetime, BeforeValidator(_utc_datetime)]
JsonObject = Annotated[dict[str, Any], BeforeValidator(_json_object)]
ExchangeSettings = Annotated[dict[str, str | int | float], BeforeValidator(_json_object)]
Name = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^\S+$")]
NameList = Annotated[tuple[Name, ...], BeforeValidator(_comma_list)]
ModuleList = Annotated[tuple[Annotated[str, Field(min_length=1)], ...], BeforeValidator(_comma_list)]
Exchange = Annotated[Name, BeforeValidator(_exchange)]
FrameInterval = Annotated[str, BeforeValidator(_frame_interval)]
ChartFile = Annotated[Path, BeforeValidator(_chart)]
ReplaySpeed = Annotated[float, BeforeValidator(_replay_speed)]


class Frame(BaseModel):
    """A backtest time range ``START..END`` (both ends inclusive), stepped by ``--frame-interval``."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    start: UtcDatetime
    end: UtcDatetime

    @model_validator(mode="after")
    def _ordered(self) -> Frame:
        if self.end <= self.start:
            raise ValueError(_frame_order_message(self.start, self.end))
        return self


def _frame_order_message(start: datetime, end: datetime) -> str:
    message = f"frame end {end.isoformat()} is not after its start {start.isoformat()}"
    return message + " (end is before start)" if end < start else message


def _frame(value: object) -> object:
    """``START..END`` becomes a :class:`Frame`; a bare word is a frame a ``--load`` module registers."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    start_s, sep, end_s = text.partition("..")
    if sep:
        if not start_s.strip() or not end_s.strip():
            raise ValueError("must be START..END, e.g. 2024-01-01T00:00:00Z..2024-01-31T00:00:00Z")
        start, end = parse_time(start_s), parse_time(end_s, end=True)
        if end <= start:
            raise ValueError(_frame_order_message(start, end))
        return Frame(start=start, end=end)
    if not text or text[0].isdigit() or any(c.isspace() for c in text):
        raise ValueError(
            f"{text!r}: must be START..END (e.g. 2024-01-01..2024-01-31) or the name of a registered frame"
        )
    return text


FrameRef = Annotated[Frame | str, BeforeValidator(_frame)]


def _grid(value: object) -> object:
    """The ``--grid`` text is expanded now, so a bad axis is reported with the other options."""
    if isinstance(value, str):
        from backtest_kit.grid import GridError, parse_grid

        try:
            return parse_grid(value)
        except GridError as exc:
            raise ValueError(str(exc).removeprefix("invalid grid:").strip().replace("\n  ", "; ")) from None
    return value


GridAxes = Annotated[Grid, BeforeValidator(_grid)]


# -- the option table ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class OptionSpec:
    """How one model field is spelled on the command line and in the environment.

    ``name`` is the option's spelling when it differs from the field (``json`` would shadow a
    pydantic method); ``switch`` options take no value (the variable takes 1/true/0/false).
    """

    field: str
    help: str
    env: str | None = None
    repeatable: bool = False
    metavar: str | None = None
    switch: bool = False
    choices: tuple[str, ...] = ()
    name: str | None = None
    #: How the help introduces ``choices`` ("one of", or "built in" when --load can add more).
    choices_label: str = "one of"

    @property
    def option(self) -> str:
        return self.name or self.field

    @property
    def flag(self) -> str:
        return "--" + self.option.replace("_", "-")

    @property
    def env_name(self) -> str:
        return self.env or ENV_PREFIX + self.option.upper().replace("-", "_")


def _specs(*specs: OptionSpec) -> dict[str, OptionSpec]:
    return {s.field: s for s in specs}


#: The one table of options: every command's options are the entries its model has fields for.
OPTIONS: dict[str, OptionSpec] = _specs(
    OptionSpec("symbol", "market symbol, e.g. BTCUSDT"),
    OptionSpec(
        "strategy",
        "strategy name: a built-in or shipped example, or one a --load module registers",
        choices=BUILTIN_STRATEGIES,
        choices_label="built in",
    ),
    OptionSpec("params", "strategy parameters as a JSON object", metavar="JSON"),
    OptionSpec(
        "exchange",
        "where candles come from: a kind the runner builds or an exchange a --load module registers",
        choices=EXCHANGE_KINDS,
    ),
    OptionSpec(
        "exchange_options",
        "JSON object of exchange settings: binance {baseUrl, requestTimeout, maxRetries, maxRetryAfter}, "
        "csv {path}, ccxt {maxRetries}",
        metavar="JSON",
    ),
    OptionSpec(
        "load",
        "module path or .py file to import first; it may register strategies, exchanges, frames, "
        "walkers (repeatable; variable: comma separated)",
        repeatable=True,
        metavar="MODULE",
    ),
    OptionSpec(
        "frame",
        "START..END (ISO-8601, both ends inclusive; a bare END date means its last minute) "
        "or a frame a --load module registers",
        metavar="RANGE",
    ),
    OptionSpec("frame_interval", "tick step of an inline frame", choices=tuple(FRAME_INTERVALS)),
    OptionSpec("metric", "statistic to rank by / report as metricValue", choices=WALKER_METRICS),
    OptionSpec("state_dir", "directory of durable live state", metavar="DIR"),
    OptionSpec("replay_from", "replay history on a simulated clock starting at this time", metavar="ISO"),
    OptionSpec("speed", "simulated seconds per wall second when replaying (a number, or max)", metavar="N"),
    OptionSpec("until", "stop (exit 0) once the clock reaches this time", metavar="ISO"),
    OptionSpec("events", "append every yielded result as a JSON line to this file", metavar="FILE"),
    OptionSpec("http_port", "port of the HTTP API and /metrics (0: any free port)", metavar="PORT"),
    OptionSpec("http_host", "address the HTTP API binds to", metavar="HOST"),
    OptionSpec(
        "json_file",
        "write {signals, stats} (backtest) or the comparison (walker) as indented JSON here",
        name="json",
        metavar="FILE",
    ),
    OptionSpec("report", "write the markdown report here", metavar="FILE"),
    OptionSpec(
        "chart",
        "write the trading chart here (candles, trades, equity, drawdown, volume); "
        ".html is interactive and works offline, .png/.svg need kaleido",
        metavar="FILE",
        choices=CHART_SUFFIXES,
    ),
    OptionSpec(
        "output",
        "write the compact result JSON here (the form a pod's termination message carries)",
        metavar="FILE",
    ),
    OptionSpec("walker", "a walker a --load module registers (instead of --strategies)", metavar="NAME"),
    OptionSpec(
        "strategies",
        "strategies to compare (comma separated or repeated); built-in or registered by --load",
        repeatable=True,
        choices=BUILTIN_STRATEGIES,
        choices_label="built in",
    ),
    OptionSpec("jobs", "strategies backtested in parallel processes", metavar="N"),
    OptionSpec(
        "grid",
        "walker: every combination of these parameter values of the one --strategies entry, e.g. "
        "'fast=3,5,8,10 slow=20..50:10' (space-separated axes NAME=V1,V2,... or NAME=FROM..TO[:STEP]); "
        "--params gives the other parameters",
        metavar="AXES",
    ),
    OptionSpec(
        "shards",
        "walker-task: split --tasks into this many shares (round-robin); the index runs its whole "
        "share over one prepared market",
        metavar="N",
    ),
    OptionSpec("tasks", "JSON list of {label, strategy, params}", metavar="JSON"),
    OptionSpec(
        "job_completion_index", "which task to run (set by an indexed Job)", env="JOB_COMPLETION_INDEX"
    ),
    OptionSpec("quiet", "print nothing on stdout (results, reports)", switch=True),
    OptionSpec(
        "json_lines",
        "live: print each result as a JSON line (the --events form) instead of a readable line",
        switch=True,
    ),
    OptionSpec("drain", "start draining: open nothing new, exit 0 once no signal is open", switch=True),
    OptionSpec(
        "control_token_file",
        "file holding the bearer token the mutating HTTP endpoints require (unset: loopback only)",
        metavar="FILE",
    ),
    OptionSpec("log_level", "log level on stderr", metavar="LEVEL", choices=LOG_LEVELS),
    OptionSpec(
        "debug", "show the traceback of a failure (otherwise one line says what went wrong)", switch=True
    ),
)


class RunnerOptions(BaseModel):
    """Common base: frozen, no unknown fields; ``SPECS`` are the table entries of its fields."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    COMMAND: ClassVar[str] = ""
    SPECS: ClassVar[tuple[OptionSpec, ...]] = ()

    log_level: LogLevel = "INFO"
    debug: bool = False

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        missing = set(cls.model_fields) - set(OPTIONS)
        if missing:
            raise TypeError(f"{cls.__name__}: fields {sorted(missing)} have no entry in OPTIONS")
        cls.SPECS = tuple(spec for spec in OPTIONS.values() if spec.field in cls.model_fields)

    def to_json(self) -> dict[str, Any]:
        """camelCase JSON of the options (``/status`` shows it as ``config``)."""
        return {_camel(k): v for k, v in self.model_dump(mode="json").items()}

    @classmethod
    def default_text(cls, field: str) -> str | None:
        """The default as the help shows it, or None when there is nothing to show."""
        default = cls.model_fields[field].default
        if default is PydanticUndefined or default is None or default is False or default == ():
            return None
        return str(default)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.capitalize() for p in rest)


class _Market(RunnerOptions):
    """Where candles come from and what to import first (every command)."""

    symbol: Name
    exchange: Exchange = "synthetic"
    exchange_options: ExchangeSettings = Field(default_factory=dict)
    load: ModuleList = ()


class _Backtested(_Market):
    """How a backtest range is stepped and the metric that sums a run up (the batch commands)."""

    frame_interval: FrameInterval = "1m"
    metric: WalkerMetric = "sharpeRatio"


class TraderOptions(_Market):
    """``live``: one live trader with its HTTP API, on the wall clock or replaying history."""

    COMMAND: ClassVar[str] = "live"

    strategy: Name
    params: JsonObject = Field(default_factory=dict)
    state_dir: Path = DEFAULT_STATE_DIR
    replay_from: UtcDatetime | None = None
    speed: ReplaySpeed | None = None
    until: UtcDatetime | None = None
    events: Path | None = None
    http_port: int = Field(DEFAULT_HTTP_PORT, ge=0, le=65535)
    http_host: str = Field("0.0.0.0", min_length=1)
    quiet: bool = False
    json_lines: bool = False
    drain: bool = False
    control_token_file: Path | None = None

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


class BacktestOptions(_Backtested):
    """``backtest``: one strategy over a frame; the markdown report on stdout, files on request."""

    COMMAND: ClassVar[str] = "backtest"

    strategy: Name
    params: JsonObject = Field(default_factory=dict)
    frame: FrameRef
    json_file: Path | None = None
    report: Path | None = None
    chart: ChartFile | None = None
    events: Path | None = None
    output: Path | None = None
    quiet: bool = False
    log_level: LogLevel = "WARNING"  # stderr stays for the progress bar and errors


class WalkerOptions(_Backtested):
    """``walker``: compare strategies over one frame by a metric, in parallel with --jobs."""

    COMMAND: ClassVar[str] = "walker"

    frame: FrameRef | None = None  # a registered walker names its own
    walker: Name | None = None
    strategies: NameList = ()
    jobs: int = Field(1, ge=1, le=256)
    grid: GridAxes | None = None
    params: JsonObject = Field(default_factory=dict)
    json_file: Path | None = None
    quiet: bool = False
    log_level: LogLevel = "WARNING"

    @model_validator(mode="after")
    def _walker_or_inline(self) -> WalkerOptions:
        if self.walker is not None and self.strategies:
            raise ValueError("give --walker NAME or --strategies, not both")
        if self.grid is not None and len(self.strategies) != 1:
            raise ValueError("--grid varies one strategy: give exactly one --strategies entry (not --walker)")
        if self.params and self.grid is None:
            raise ValueError("--params with walker gives the fixed parameters of a --grid; give --grid too")
        if self.walker is None and (not self.strategies or self.frame is None):
            missing = [f for f, v in (("--strategies", self.strategies), ("--frame", self.frame)) if not v]
            raise ValueError(
                f"give --walker NAME, or --strategies and --frame (missing: {', '.join(missing)})"
            )
        return self


class WalkerTask(BaseModel):
    """One entry of ``BACKTEST_KIT_TASKS``: a strategy (with parameters) the Walker compares."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    label: Name
    strategy: Name
    params: JsonObject = Field(default_factory=dict)


class WalkerTaskOptions(_Backtested):
    """``walker-task``: the task at ``JOB_COMPLETION_INDEX`` of an indexed Kubernetes Job."""

    COMMAND: ClassVar[str] = "walker-task"

    tasks: Annotated[tuple[WalkerTask, ...], BeforeValidator(_json_list), Field(min_length=1)]
    job_completion_index: int = Field(ge=0)
    frame: FrameRef
    output: Path = DEFAULT_OUTPUT
    shards: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _index_in_range(self) -> WalkerTaskOptions:
        count = len(self.tasks) if self.shards is None else min(self.shards, len(self.tasks))
        if self.shards is not None and self.shards > len(self.tasks):
            raise ValueError(f"--shards {self.shards} is more than the {len(self.tasks)} tasks")
        if self.job_completion_index >= count:
            what = "tasks" if self.shards is None else "shares"
            raise ValueError(
                f"JOB_COMPLETION_INDEX {self.job_completion_index} is out of range: there are {count} {what}"
            )
        if self.shards is not None and len({t.label for t in self.tasks}) != len(self.tasks):
            raise ValueError("two tasks have the same label (a share runs them side by side)")
        return self

    @property
    def task(self) -> WalkerTask:
        return self.tasks[self.job_completion_index]

    @property
    def share(self) -> tuple[WalkerTask, ...]:
        """The tasks this index runs: its round-robin share with ``--shards``, else its one task."""
        if self.shards is None:
            return (self.task,)
        return tuple(self.tasks[i] for i in shards(len(self.tasks), self.shards)[self.job_completion_index])


COMMANDS: dict[str, type[RunnerOptions]] = {
    cls.COMMAND: cls for cls in (TraderOptions, BacktestOptions, WalkerOptions, WalkerTaskOptions)
}
DEFAULT_COMMAND = TraderOptions.COMMAND
#: ``run X`` is ``X`` (the pod entry point of older manifests); ``run`` alone is ``live``.
RUN_ALIAS = "run"
#: ``data download ...`` has its own parser (:mod:`.data`): it runs no strategy.
DATA_COMMAND = "data"
#: ``control pause|resume|close|stop|status`` has its own parser (:mod:`.control`): it runs no strategy.
CONTROL_COMMAND = "control"


# -- the command line ---------------------------------------------------------------------------------


class _ArgumentParser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so every bad option takes the same path."""

    def error(self, message: str) -> Any:  # argparse's signature is NoReturn
        raise OptionsError(f"{self.prog}: {message}")


def option_help(cls: type[RunnerOptions], spec: OptionSpec) -> str:
    """The help line of ``spec`` in command ``cls``: text, choices, default and variable."""
    text = spec.help
    if spec.choices:
        text += f"; {spec.choices_label}: {', '.join(spec.choices)}"
    default = cls.default_text(spec.field)
    if default is not None:
        text += f" (default {default})"
    return f"{text} [env {spec.env_name}]"


def _add_option(cmd: argparse.ArgumentParser, cls: type[RunnerOptions], spec: OptionSpec) -> None:
    kwargs: dict[str, Any] = {"dest": spec.field, "default": argparse.SUPPRESS}
    if spec.switch:
        kwargs.update(action="store_const", const=True)
    else:
        kwargs.update(action="append" if spec.repeatable else "store", metavar=spec.metavar)
    cmd.add_argument(spec.flag, help=option_help(cls, spec).replace("%", "%%"), **kwargs)


def build_parser(prog: str = "backtest-kit") -> argparse.ArgumentParser:
    parser = _ArgumentParser(
        prog=prog,
        description=(
            "Backtest a strategy, compare strategies (walker), run one live trader with an HTTP API "
            "(live, the default), or one task of a Walker Job (walker-task). "
            f"Every option can also be given as {ENV_PREFIX}<OPTION> (upper case, '-' -> '_'); "
            "the command line wins. Exit codes: 0 done, 1 the run failed, 2 bad input, "
            "130/143 interrupted."
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    sub = parser.add_subparsers(dest="command", metavar="{backtest,live,walker,walker-task,data,control,run}")
    for name, cls in COMMANDS.items():
        doc = (cls.__doc__ or "").strip().replace("``", "'")
        summary = doc.splitlines()[0].partition(": ")[2] or doc  # the docstring says "'name': what"
        cmd = sub.add_parser(name, help=summary, description=doc)
        for spec in cls.SPECS:
            _add_option(cmd, cls, spec)
    sub.add_parser(
        DATA_COMMAND,
        help="'data download': fill a local Parquet cache of exchange candles (see 'data download --help')",
    )
    sub.add_parser(
        CONTROL_COMMAND,
        help="'control pause|resume|close|stop|status --url URL': drive a running live runner "
        "(see 'control --help')",
    )
    sub.add_parser(RUN_ALIAS, help=f"'{RUN_ALIAS} X' is the same as 'X'; '{RUN_ALIAS}' alone is live")
    return parser


def package_version() -> str:
    """The installed distribution's version (``unknown`` when run from a bare source tree)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("backtest-kit-operator")
    except PackageNotFoundError:
        return "unknown"


def with_default_command(argv: Sequence[str]) -> list[str]:
    """Drop a leading ``run`` and put ``live`` in front when no command is named."""
    args = list(argv)
    if args and args[0] == RUN_ALIAS:
        args = args[1:]
        if not args or args[0] in ("-h", "--help"):
            args = [DEFAULT_COMMAND, *args]  # 'run --help' explains live
    if args and (args[0] in COMMANDS or args[0] in ("-h", "--help", "--version")):
        return args
    return [DEFAULT_COMMAND, *args]


def parse_options(argv: Sequence[str], environ: Mapping[str, str]) -> RunnerOptions:
    """The validated options of the command in ``argv`` (variables from ``environ``).

    Raises :class:`OptionsError` with a message naming the option, its flag and variable.
    ``-h``/``--help`` print the help and raise ``SystemExit(0)`` as usual.
    """
    namespace = build_parser().parse_args(with_default_command(argv))
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
        spec = specs.get(str(loc[0])) if loc else None
        message = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        if spec is None:
            lines.append(f"  {message}")
            continue
        spelled = f"{spec.flag} / {spec.env_name}"
        where = ".".join(str(p) for p in loc[1:] if p not in ("Frame", "str"))  # union branches
        if err.get("type") == "missing":
            lines.append(f"  {spelled}: required, not given")
        else:
            suffix = f" at {where}" if where else ""
            lines.append(f"  {spelled}{suffix}: {message} (given by {source.get(spec.field, 'default')})")
    return "\n".join(lines)
