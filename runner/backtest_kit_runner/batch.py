"""Batch commands: one backtest, a Walker comparison, or one task of a Walker run as an indexed Job.

A person runs ``backtest`` and ``walker`` at a shell and wants the report on stdout and files on
request (JSON, markdown, chart). The operator runs each strategy of a Walker as one completion of
an indexed Job (``walker-task``), so each pod backtests exactly one ``{label, strategy, params}``
and reports its statistics through the pod's termination message, which the operator reads back
without any storage or network between them. That message is capped by Kubernetes at 4096 bytes,
so the result is written as compact JSON and trimmed to the comparison metrics if it would not fit;
``backtest --output`` writes the same compact form. A parameter grid (``walker --grid``) expands
one parametrised strategy into its members; in a Job (``walker-task --shards N``) each index runs
its share of them in one process over one prepared market and reports them all in one message,
``{"results": [...]}``, trimmed the same way.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import backtest_kit
from backtest_kit import BacktestRun
from backtest_kit.candles import to_ms
from backtest_kit.chart_html import build_figure, check_chart_path, write_chart
from backtest_kit.charts import equity_curve
from backtest_kit.errors import BacktestKitError, ConfigurationError
from backtest_kit.eventlog import EventLog
from backtest_kit.metrics import metric_value
from backtest_kit.notebook import chart_candles, frame_info, resolve_frame
from backtest_kit.reports import trade_of

from .exchange_setup import PreparedExchange, prepare_exchange
from .loading import load_modules, parametrised_offer, resolve_strategy
from .options import (
    WALKER_METRICS,
    BacktestOptions,
    Frame,
    WalkerOptions,
    WalkerTaskOptions,
)
from .progress import BacktestProgress, Bar
from .reporting import ErrorTally

log = logging.getLogger("backtest_kit_runner.batch")

#: Kubernetes truncates a termination message to 4096 bytes.
TERMINATION_MESSAGE_LIMIT = 4096
#: Statistics kept when the full set would not fit.
ESSENTIAL_STATS = ("totalSignals", "winCount", "lossCount", *WALKER_METRICS)
#: Statistics a share's rows keep when even the essentials would not fit (the status table's).
SHARE_STATS = ("totalSignals", "winRate", "totalPnl", "sharpeRatio", "maxDrawdown")
#: The name an inline walker (``walker --strategies``) is registered under.
INLINE_WALKER = "inline"


def result_message(payload: dict[str, Any], limit: int = TERMINATION_MESSAGE_LIMIT) -> str:
    """Compact JSON of ``payload``; its ``stats`` trimmed to the essentials if it exceeds ``limit``."""
    text = json.dumps(payload, separators=(",", ":"), allow_nan=False)
    if len(text.encode()) <= limit:
        return text
    stats = payload.get("stats") or {}
    trimmed = {k: stats[k] for k in ESSENTIAL_STATS if k in stats}
    text = json.dumps({**payload, "stats": trimmed, "statsTruncated": True}, separators=(",", ":"))
    if len(text.encode()) > limit:
        text = json.dumps({**payload, "stats": {}, "statsTruncated": True}, separators=(",", ":"))
    return text


def check_output(path: Path | None, flag: str = "--output", *, make_parents: bool = False) -> None:
    """Refuse, before any work, a file the result could not be written to.

    ``--output`` goes where a pod mounts it, so its directory must exist; the files a person asks
    for (``--json``, ``--report``, ``--chart``) get their missing directories created.
    """
    if path is None:
        return
    target = path if path.exists() else path.parent
    while make_parents and not target.exists() and target != target.parent:
        target = target.parent
    if not target.exists() or not os.access(target, os.W_OK):
        raise ConfigurationError(f"{flag} {path}: cannot write there ({target} is missing or read-only)")


def write_result(path: Path, text: str, *, echo: bool = True) -> None:
    """Write the result where the operator collects it (and to stdout for people and logs)."""
    if echo:
        print(text, flush=True)
    try:
        with path.open("w", encoding="utf-8") as fh:
            fh.write(text)
    except OSError as exc:
        raise OSError(f"cannot write the result to {path}: {exc.strerror or exc}") from exc


def write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def write_json(path: Path, payload: Mapping[str, Any], *, rows: str) -> None:
    """``payload`` as JSON, its ``rows`` (any iterable) one compact element per line, the rest indented.

    A year of signals is tens of thousands of rows: indenting every field of every row runs the
    pure-Python encoder, while one compact row per line keeps the C encoder and stays readable.
    The file appears whole or not at all (written aside, then renamed): Ctrl-C leaves nothing
    half-written.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    encode = json.JSONEncoder(allow_nan=False, separators=(",", ":")).encode
    items = list(payload.items())
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write("{\n")
            for i, (key, value) in enumerate(items):
                fh.write(f" {json.dumps(key)}: ")
                if key == rows and not isinstance(value, (str, bytes, Mapping)):
                    # streamed: one row encoded and written at a time (a year is ~10 MB of rows)
                    first = True
                    for row in value:
                        fh.write(("[\n  " if first else ",\n  ") + encode(row))
                        first = False
                    fh.write("[]" if first else "\n ]")
                else:
                    fh.write(json.dumps(value, indent=1, allow_nan=False).replace("\n", "\n "))
                fh.write(",\n" if i < len(items) - 1 else "\n")
            fh.write("}\n")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def register_frame(name: str, frame: Frame | str, interval: str) -> str:
    """The engine's name of ``frame``: an inline range is registered under ``name``."""
    if isinstance(frame, str):
        return frame
    backtest_kit.add_frame(name, start=frame.start, end=frame.end, interval=interval, replace=True)
    return name


def frame_json(frame: Frame | str, interval: str) -> dict[str, Any]:
    if isinstance(frame, str):
        return {"name": frame}
    return {"start": to_ms(frame.start), "end": to_ms(frame.end), "interval": interval}


@dataclass(frozen=True)
class BacktestJob:
    """One strategy over one frame, as every batch command describes it."""

    symbol: str
    strategy: str
    params: Mapping[str, Any]
    exchange: str
    exchange_options: Mapping[str, object]
    load: tuple[str, ...]
    frame: Frame | str
    frame_interval: str
    metric: str
    events: Path | None = None
    #: Called with every yielded result (the chart collects the closed ones).
    on_result: Callable[[Any], None] | None = field(default=None, compare=False)


def _prepare(name: str, settings: Mapping[str, object]) -> PreparedExchange:
    return prepare_exchange(
        name,
        on_request=None,
        register=backtest_kit.add_exchange,
        registered=backtest_kit.list_exchanges,
        settings=settings,
    )


def _describe(frame: Frame | str, interval: str) -> str:
    if isinstance(frame, str):
        return f"frame {frame}"
    return f"from {frame.start.isoformat()} to {frame.end.isoformat()} ({interval})"


class AllAsksFailedError(BacktestKitError):
    """Every call of the strategy's ``get_signal`` failed: the run says nothing about the strategy."""


async def backtest_once(job: BacktestJob, *, chart: Path | None = None) -> dict[str, Any]:
    """Load, validate, run the backtest and return ``{strategy, metric, metricValue, stats, ...}``.

    The result also carries the run's ``asks`` (``get_signal`` calls), ``signalErrors`` and the
    ``summary``; with ``chart`` the trading chart is written while the exchange is still open.
    """
    modules = load_modules(job.load)
    chosen = resolve_strategy(job.strategy, job.params, modules, registered=backtest_kit.list_strategies)
    prepared = _prepare(job.exchange, job.exchange_options)
    frame_name = register_frame(f"runner-{job.symbol}-{chosen.name}", job.frame, job.frame_interval)
    describe = _describe(job.frame, job.frame_interval)
    log.info("backtest %s %s on %s %s", job.symbol, chosen.name, prepared.name, describe)
    event_log = EventLog(job.events) if job.events is not None else None
    engine = backtest_kit.default_engine()
    try:
        async for result in backtest_kit.Backtest.run(
            job.symbol, strategy=chosen.name, exchange=prepared.name, frame=frame_name
        ):
            if event_log is not None:
                event_log.append(result.flat())
            if job.on_result is not None:
                job.on_result(result)
        run = engine.backtest.latest(job.symbol, chosen.name)
        assert run is not None, "Backtest.run records its run"
        schema = resolve_frame(frame_name, engine)
        run.record.frame_info = await frame_info(engine, job.symbol, prepared.name, schema)
        if chart is not None and not (run.asks and run.signal_errors == run.asks):
            candles = await chart_candles(engine, job.symbol, prepared.name, schema)
            trades = [trade_of(r) for r in run.record.closed]
            title = f"{chosen.name} on {job.symbol} ({prepared.name}, {describe})"
            figure = build_figure(
                candles, run.record.closed, equity_curve(trades), title=title, start_ms=schema.start_ms
            )
            write_chart(chart, figure)
    finally:
        if event_log is not None:
            event_log.close()
        await prepared.aclose()
    stats = await backtest_kit.Backtest.get_data(job.symbol, chosen.name)
    return {
        "strategy": chosen.name,
        "symbol": job.symbol,
        "exchange": prepared.name,
        "frame": frame_json(job.frame, job.frame_interval),
        "params": dict(chosen.params),
        "metric": job.metric,
        "metricValue": metric_value(stats, job.metric),
        "asks": run.asks,
        "signalErrors": run.signal_errors,
        "summary": run.record.summary().to_json(),
        "stats": stats,
    }


def run_verdict(strategy: str, run: BacktestRun) -> str | None:
    """A line about a run that says nothing about the strategy (no signal, or every ask failed)."""
    if run.asks and run.signal_errors == run.asks:
        return f"error: get_signal of {strategy!r} failed on every one of its {run.asks:,} asks; no trades"
    if not run.record.ended and not run.signal_errors and not run.record.closed:
        return (
            f"note: {strategy!r} returned no signal in {run.asks:,} asks of get_signal "
            "(every call returned None)"
        )
    return None


def _check_outputs(options: BacktestOptions) -> None:
    check_output(options.output)
    for flag, path in (
        ("--json", options.json_file),
        ("--report", options.report),
        ("--chart", options.chart),
    ):
        check_output(path, flag, make_parents=True)
    if options.chart is not None:
        check_chart_path(options.chart)


@contextlib.contextmanager
def long_lived_results() -> Iterator[None]:
    """A ``backtest`` process is one run whose results live until it exits: what it imported and
    built is moved out of the collector's view (``gc.freeze``), and so are the results before the
    files are made from them (a year is tens of thousands of objects the collector would
    otherwise walk again and again). During the walk itself the engine collects less often."""
    gc.freeze()
    try:
        yield
    finally:
        gc.freeze()


async def run_backtest(options: BacktestOptions) -> int:
    """``backtest``: the report on stdout (unless --quiet); JSON, report, chart, result on request.

    Files are written only once the run has finished, so an interrupted run leaves none behind.
    """
    _check_outputs(options)
    job = BacktestJob(
        symbol=options.symbol,
        strategy=options.strategy,
        params=options.params,
        exchange=options.exchange,
        exchange_options=options.exchange_options,
        load=options.load,
        frame=options.frame,
        frame_interval=options.frame_interval,
        metric=options.metric,
        events=options.events,
    )
    errors = ErrorTally(debug=options.debug)
    progress = BacktestProgress(sys.stderr.isatty() and not options.quiet)
    unsubscribe = [backtest_kit.listen_error(errors), backtest_kit.listen_progress_backtest(progress)]
    try:
        with long_lived_results():
            result = await backtest_once(job, chart=options.chart)
    finally:
        progress.interrupt()
        for off in unsubscribe:
            off()
        errors.finish()
    run = backtest_kit.default_engine().backtest.latest(options.symbol, str(result["strategy"]))
    assert run is not None
    verdict = run_verdict(str(result["strategy"]), run)
    if verdict is not None:
        sys.stderr.write(verdict + "\n")
    if run.asks and run.signal_errors == run.asks:
        return 1
    await _write_backtest_files(options, result)
    return 0


async def _write_backtest_files(options: BacktestOptions, result: dict[str, Any]) -> None:
    symbol, strategy = options.symbol, str(result["strategy"])
    if options.output is not None:
        write_result(options.output, result_message({"label": strategy, **result}), echo=False)
    if options.json_file is not None:
        run = backtest_kit.Backtest.latest(symbol, strategy)
        assert run is not None, "the backtest just ran"
        payload = {
            "signals": (r.flat() for r in run.record.ended),  # Backtest.get_signals, streamed
            "stats": result["stats"],
            "summary": result["summary"],
            "asks": result["asks"],
            "signalErrors": result["signalErrors"],
        }
        write_json(options.json_file, payload, rows="signals")
    report = await backtest_kit.Backtest.get_report(symbol, strategy)
    if options.report is not None:
        write_text(options.report, report)
    if not options.quiet:
        sys.stdout.write(report)
        sys.stdout.flush()


def results_message(rows: Sequence[Mapping[str, Any]], limit: int = TERMINATION_MESSAGE_LIMIT) -> str:
    """``{"results": rows}`` as compact JSON, the rows' stats trimmed as far as it takes to fit."""
    keeps: tuple[tuple[str, ...] | None, ...] = (None, ESSENTIAL_STATS, SHARE_STATS, ())
    text = ""
    for keep in keeps:
        trimmed = [
            dict(row)
            if keep is None
            else {**row, "stats": {k: v for k, v in (row.get("stats") or {}).items() if k in keep}}
            for row in rows
        ]
        text = json.dumps(
            {"results": trimmed, **({} if keep is None else {"statsTruncated": True})},
            separators=(",", ":"),
            allow_nan=False,
        )
        if len(text.encode()) <= limit:
            break
    return text


async def run_walker_task(options: WalkerTaskOptions) -> int:
    """``walker-task``: the indexed task's backtest, its compact result to ``--output``."""
    if options.shards is not None:
        return await _run_task_share(options)
    task = options.task
    check_output(options.output)
    log.info("walker task %d of %d: %s", options.job_completion_index, len(options.tasks), task.label)
    result = await backtest_once(
        BacktestJob(
            symbol=options.symbol,
            strategy=task.strategy,
            params=task.params,
            exchange=options.exchange,
            exchange_options=options.exchange_options,
            load=options.load,
            frame=options.frame,
            frame_interval=options.frame_interval,
            metric=options.metric,
        )
    )
    payload = {
        "label": task.label,
        "strategy": result["strategy"],
        "metric": result["metric"],
        "metricValue": result["metricValue"],
        "stats": result["stats"],
    }
    write_result(options.output, result_message(payload))
    return 0


async def _run_task_share(options: WalkerTaskOptions) -> int:
    """``walker-task --shards N``: this index's share of the tasks, one after the other in this
    process over one prepared market, and every result in one termination message."""
    check_output(options.output)
    share = options.share
    log.info("walker task share %d of %d: %d tasks", options.job_completion_index, options.shards, len(share))
    modules = load_modules(options.load)
    registry = backtest_kit.default_engine().registry
    names: dict[str, str] = {}
    for task in share:
        chosen = resolve_strategy(
            task.strategy, task.params, modules, registered=backtest_kit.list_strategies
        )
        registry.copy_strategy(chosen.name, task.label, replace=True)
        names[task.label] = chosen.name
    prepared = _prepare(options.exchange, options.exchange_options)
    walker = f"{INLINE_WALKER}-share-{options.job_completion_index}"
    try:
        frame = register_frame(f"walker-{options.symbol}", options.frame, options.frame_interval)
        backtest_kit.add_walker(
            walker,
            strategies=[t.label for t in share],
            exchange=prepared.name,
            frame=frame,
            metric=options.metric,
            replace=True,
            shared_market=True,
        )
        async for _ in backtest_kit.Walker.run(options.symbol, walker=walker):
            pass
    finally:
        await prepared.aclose()
    data = await backtest_kit.Walker.get_data(options.symbol, walker)
    rows = [
        {
            "label": r["strategyName"],
            "strategy": names[r["strategyName"]],
            "metric": options.metric,
            "metricValue": r["metricValue"],
            "stats": r["stats"] or {},
            **({"error": str(r["error"])[:300]} if r["error"] else {}),
        }
        for r in data["strategyResults"]
    ]
    write_result(options.output, results_message(rows))
    return 0


def _grid_walker(options: WalkerOptions, modules: list[ModuleType], exchange: str) -> str:
    """Register the members of ``--grid`` over the one ``--strategies`` entry; returns the walker.

    Every member is validated by the strategy's ``Params`` first (all refusals in one message);
    the walker shares the market: each process fetches the candles once for all its members.
    """
    assert options.grid is not None and options.frame is not None, "the options model requires both"
    offer = parametrised_offer(options.strategies[0], modules, registered=backtest_kit.list_strategies)
    frame = register_frame(f"walker-{options.symbol}", options.frame, options.frame_interval)
    members = backtest_kit.Walker.add_grid(
        INLINE_WALKER,
        strategy=offer.name,
        grid=options.grid,
        register=offer.register,
        params=offer.params_model,
        base=options.params,
        exchange=exchange,
        frame=frame,
        metric=options.metric,
        replace=True,
    )
    log.info("grid of %s: %d members", offer.name, len(members))
    return INLINE_WALKER


def _inline_walker(options: WalkerOptions, modules: list[ModuleType], exchange: str) -> str:
    """Register the walker ``--strategies/--frame/--metric`` describe; returns its name.

    Each strategy is resolved as ``backtest`` resolves one, so the shipped parametrised examples
    take part with their default parameters.
    """
    names = [
        resolve_strategy(s, {}, modules, registered=backtest_kit.list_strategies).name
        for s in options.strategies
    ]
    assert options.frame is not None, "the options model requires a frame for an inline walker"
    frame = register_frame(f"walker-{options.symbol}", options.frame, options.frame_interval)
    backtest_kit.add_walker(
        INLINE_WALKER, strategies=names, exchange=exchange, frame=frame, metric=options.metric, replace=True
    )
    return INLINE_WALKER


def _progress_line(progress: Mapping[str, Any], eta: str) -> str:
    value = progress["metricValue"]
    shown = "N/A (no value)" if value is None else format(value, ".6g")
    return (
        f"[{progress['strategiesTested']}/{progress['totalStrategies']}] {progress['strategyName']}: "
        f"{progress['metric']}={shown} (best {progress['bestStrategy']}; {eta})\n"
    )


async def run_walker(options: WalkerOptions) -> int:
    """``walker``: a registered or inline comparison; the report on stdout, JSON on request."""
    check_output(options.json_file, "--json", make_parents=True)
    modules = load_modules(options.load)
    prepared = _prepare(options.exchange, options.exchange_options)
    errors = ErrorTally(debug=options.debug)
    unsubscribe = backtest_kit.listen_error(errors)
    bar = Bar(False, "strategies")  # the clock of the ETA; one line per strategy is the display
    try:
        if options.grid is not None:
            name = _grid_walker(options, modules, prepared.name)
        else:
            name = options.walker or _inline_walker(options, modules, prepared.name)
        if name not in backtest_kit.list_walkers():
            known = ", ".join(sorted(backtest_kit.list_walkers())) or "(none)"
            raise ConfigurationError(f"unknown walker {name!r}; registered: {known}")
        async for progress in backtest_kit.Walker.run(options.symbol, walker=name, jobs=options.jobs):
            if not options.quiet:
                sys.stderr.write(
                    _progress_line(
                        progress, bar.eta(progress["strategiesTested"], progress["totalStrategies"])
                    )
                )
    finally:
        unsubscribe()
        errors.finish()
        await prepared.aclose()
    data = await backtest_kit.Walker.get_data(options.symbol, name)
    if options.json_file is not None:
        write_text(options.json_file, json.dumps(data, indent=1, allow_nan=False) + "\n")
    if not options.quiet:
        sys.stdout.write(await backtest_kit.Walker.get_report(options.symbol, name))
    return 0
