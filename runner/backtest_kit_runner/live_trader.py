"""One live trader process: the engine's ``Live.run`` plus everything a pod needs around it.

This is the glue the runner exists for. It validates everything before the first tick (strategy,
parameters, exchange, state directory), wires the engine's events into the metrics and the
heartbeat, serves the HTTP API from a thread of its own (a strategy blocking the trader's loop
never stalls it; ``/status`` reads the snapshot this trader publishes after every tick and
control), runs the engine with the live budgets of :data:`LIVE_BUDGET` (so one tick's waits fit
inside the liveness window) and decides how the process ends:

* ``POST /stop`` drains: ``Live.stop`` lets the open signal close, opens nothing new, and once
  ``Live.run`` returns the process exits 0; ``--drain`` (``BACKTEST_KIT_DRAIN=1``, what the operator
  sets on a pod it starts while a LiveTrader is being deleted) asks for the same before the first
  tick, so a runner that replaces a draining one never opens a signal;
* ``POST /pause``, ``/resume``, ``/close``: the engine's manual controls (no new signal; new signals
  again; close the open position at the next tick or cancel the scheduled one);
* ``--until`` reached, or the engine finished: exit 0;
* SIGTERM/SIGINT: the trader task is cancelled, nothing is drained or abandoned (state is already
  durable), exit 143/130, within a bounded grace even while a strategy blocks the loop (see
  :mod:`.termination`);
* a fatal engine error: exit 1.
"""

from __future__ import annotations

import asyncio
import errno
import inspect
import json
import logging
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import backtest_kit
from backtest_kit.candles import to_ms
from backtest_kit.clock import Clock, ReplayClock, WallClock
from backtest_kit.errors import ConfigurationError, PersistenceError
from backtest_kit.eventlog import EventLog
from backtest_kit.persistence import FilePersistence

from .exchange_setup import PreparedExchange, exchange_label, prepare_exchange
from .heartbeat import Heartbeat, Probe
from .http_api import ApiError, ApiServer
from .lines import result_line
from .loading import LoadedStrategy, load_modules, resolve_strategy
from .metrics import RunnerMetrics
from .options import TraderOptions
from .termination import Termination

log = logging.getLogger("backtest_kit_runner.live")

#: The engine ticks once per clock minute plus a settle delay (ENGINE.md "deliberately differ" 3).
TICK_PERIOD_S = 60.0
#: A replay at maximum speed ticks as fast as it can; the heartbeat window has its own floor.
MIN_TICK_PERIOD_S = 0.001
#: The trader's totals, as the engine keeps them in its live record (one durable record).
TOTALS = ("signalsOpened", "signalsClosed", "signalsCancelled", "realizedPnlPercentage", "realizedPnlCost")
#: The engine's budgets for a live run (README "Budgets"): what one tick may wait for, so that the
#: longest silence of a healthy tick stays well inside the liveness window. A value a ``--load``
#: module set with ``backtest_kit.set_config`` wins over these.
LIVE_BUDGET: Mapping[str, Any] = {
    "get_candles_retry_count": 2,
    "get_candles_retry_delay_ms": 1000,
    "max_signal_generation_seconds": 30.0,
}
#: The liveness window is at least this multiple of the longest silence a healthy tick may keep.
SILENCE_MARGIN = 1.5


def live_config() -> backtest_kit.EngineConfig:
    """The engine's configuration with :data:`LIVE_BUDGET` for every key left at its default."""
    current, defaults = backtest_kit.get_config(), backtest_kit.EngineConfig()
    budget = {k: v for k, v in LIVE_BUDGET.items() if getattr(current, k) == getattr(defaults, k)}
    return backtest_kit.EngineConfig.model_validate({**current.model_dump(), **budget})


def longest_silence_s(config: backtest_kit.EngineConfig, exchange_silence_s: float) -> float:
    """The longest a healthy tick goes without finishing or reporting an exchange attempt."""
    between_attempts = config.get_candles_retry_delay_ms / 1000 + exchange_silence_s
    return max(config.max_signal_generation_seconds, between_attempts)


def _storage_failing(exc: PersistenceError) -> bool:
    """A full or read-only file system: what the storage does now, not what the options say."""
    cause = exc.__cause__
    return isinstance(cause, OSError) and cause.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


def _engine_control(name: str) -> Any:
    """``backtest_kit.Live.<name>``; an engine without that control is an HTTP 501, not a crash."""
    control = getattr(backtest_kit.Live, name, None)
    if control is None:
        raise ApiError(501, f"this engine has no Live.{name}")
    return control


def read_control_token(path: Path | None) -> str | None:
    """The bearer token in ``path`` (None without a file); an empty or unreadable file is exit 2."""
    if path is None:
        return None
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigurationError(f"--control-token-file {path}: {exc.strerror or exc}") from exc
    if not token:
        raise ConfigurationError(f"--control-token-file {path} is empty")
    return token


class LiveTrader:
    """The trader behind the HTTP API (it is the API's :class:`~.http_api.TraderControl`)."""

    def __init__(self, options: TraderOptions, *, metrics: RunnerMetrics | None = None) -> None:
        self.options = options
        self.exchange_name = exchange_label(options.exchange)
        self.metrics = metrics or RunnerMetrics(
            symbol=options.symbol, strategy=options.strategy, exchange=self.exchange_name
        )
        period_s = TICK_PERIOD_S + backtest_kit.get_config().live_settle_delay_ms / 1000
        self.tick_period_s = max(period_s / options.replay_speed, MIN_TICK_PERIOD_S)
        self.heartbeat = Heartbeat(self.tick_period_s)
        self.config = live_config()  # again once the --load modules ran (their set_config wins)
        self.strategy: LoadedStrategy | None = None
        self.exchange: PreparedExchange | None = None
        self.persistence: FilePersistence | None = None
        self.live_clock: Clock | None = None
        self.events: EventLog | None = None
        self.draining = False
        self.stop_reason: str | None = None
        self.finished = False
        self._tick_errors = 0
        self._unsubscribe: list[Callable[[], None]] = []
        #: ``/status`` ``config`` for the strategy it was made for: the options never change, and
        #: rendering them on every tick cost more than the rest of a replayed minute.
        self._config_json: tuple[LoadedStrategy | None, Mapping[str, Any]] | None = None
        self._snapshot = _Snapshot(self._own_status(), {})

    # -- before the first tick ------------------------------------------------------------------

    def prepare(self) -> None:
        """Load modules, validate strategy and parameters, build the exchange, check the state dir.

        Raises ``ConfigurationError`` (exit 2) for anything the options got wrong.
        """
        opts = self.options
        self.persistence = FilePersistence(opts.state_dir)
        try:
            self.persistence.init()  # the state directory must be writable before any tick
        except PersistenceError as exc:
            if _storage_failing(exc):
                raise  # the volume is fine as configured but full or read-only: the run fails (exit 1)
            raise ConfigurationError(f"{exc}; mount a volume there or pass --state-dir") from exc
        modules = load_modules(opts.load)
        self.config = live_config()
        self.strategy = resolve_strategy(
            opts.strategy, opts.params, modules, registered=backtest_kit.list_strategies
        )
        self.exchange = prepare_exchange(
            opts.exchange,
            on_request=self.on_exchange_request,
            register=backtest_kit.add_exchange,
            registered=backtest_kit.list_exchanges,
            settings=opts.exchange_options,
        )
        self.live_clock = self.clock(self.persistence)  # refuses a state dir holding another replay
        if opts.events is not None:
            try:
                # group commit: the lines are fsynced by a thread while the trader goes on, and
                # each durable record waits for them before it is put in place
                self.events = EventLog(opts.events, sync_behind=True)
                self.persistence.before_durable.append(self.events.sync)
                if self.events.problem:
                    log.error("%s", self.events.problem)
            except OSError as exc:
                raise ConfigurationError(f"--events {opts.events}: {exc.strerror or exc}") from exc
        silence = longest_silence_s(self.config, self.exchange.silence_s)
        self.heartbeat = Heartbeat(self.tick_period_s, silence_s=SILENCE_MARGIN * silence)
        self.publish()

    def clock(self, persistence: FilePersistence) -> Clock:
        """Wall time, or a replay whose anchor lives in the state directory (a restart continues it)."""
        opts = self.options
        if opts.replay_from is None:
            return WallClock()
        return ReplayClock(to_ms(opts.replay_from), opts.replay_speed, persistence=persistence)

    # -- engine events ----------------------------------------------------------------------------

    def _ours(self, event: Any) -> bool:
        return bool(
            getattr(event, "symbol", None) == self.options.symbol
            and getattr(event, "strategy_name", None) == self.options.strategy
        )

    def on_tick_result(self, result: Any) -> None:
        """A live tick result (idle, scheduled, opened, active, closed, cancelled)."""
        if not self._ours(result) or result.backtest:
            return
        self.metrics.record_tick_result(result)

    def on_exchange_request(self, interval: str, duration_s: float, error: BaseException | None) -> None:
        """Each exchange request attempt: the tick is making progress (liveness), and its timing."""
        self.heartbeat.progress()
        self.metrics.on_exchange_request(interval, duration_s, error)

    def on_restore(self, last_result: dict[str, Any] | None) -> None:
        """The engine restored the state: complete ``--events`` and show the restored signal."""
        if self.events is not None:
            self.events.append(last_result)
        engine = dict(self._engine_status())  # the engine marks the session running right after this
        engine["phase"] = "draining" if engine.get("stopRequested") else "running"
        self.publish(engine)

    def on_performance(self, event: Any) -> None:
        """Every live tick ends with a ``live_tick`` timing, whether it failed or not."""
        if not self._ours(event) or event.backtest or event.metric != "live_tick":
            return
        self.heartbeat.beat()
        self.metrics.record_performance(event)
        view = self._engine_view()  # rendered only when /status is read
        errors = view.tick_errors
        if errors != self._tick_errors:
            self.metrics.record_tick_errors(errors - self._tick_errors)
            self._tick_errors = errors
        # the engine keeps the totals in the trader's own durable record (restored on a restart)
        self.metrics.set_realized_pnl_percent(view.totals.realized_pnl_percentage)
        self.metrics.set_frozen(bool(view.frozen))
        if self.draining and not view.stop_requested:
            # a drain asked for before Live.run had started its session: ask again
            backtest_kit.Live.request_stop(self.options.symbol, self.options.strategy)
        self.publish(view)

    def on_error(self, error: BaseException) -> None:
        log.warning("engine error: %s", error)

    def on_exit(self, error: BaseException) -> None:
        log.error("fatal engine error, the live loop ends: %s", error)

    def subscribe(self) -> None:
        self._unsubscribe = [
            backtest_kit.listen_signal_live(self.on_tick_result),
            backtest_kit.listen_performance(self.on_performance),
            backtest_kit.listen_error(self.on_error),
            backtest_kit.listen_exit(self.on_exit),
        ]

    def unsubscribe(self) -> None:
        for off in self._unsubscribe:
            off()
        self._unsubscribe = []

    # -- TraderControl ------------------------------------------------------------------------------

    def _engine_status(self) -> Mapping[str, Any]:
        return backtest_kit.Live.get_status(self.options.symbol, self.options.strategy)

    def _engine_view(self) -> Any:
        """The engine's status of this session as a view (its ``to_json`` is ``get_status``)."""
        return backtest_kit.Live.status_view(self.options.symbol, self.options.strategy)

    def publish(self, engine: Any = None) -> None:
        """Replace the status snapshot ``GET /status`` serves (called on the trader's loop only).

        ``engine`` is the engine's status or a view of it. The snapshot holds what this trader
        shows of itself now and that status, and is rendered when ``/status`` first reads it: a
        tick publishes without rendering anything.
        """
        self._snapshot = _Snapshot(self._own_status(), self._engine_view() if engine is None else engine)

    def status(self) -> Mapping[str, Any]:
        """``GET /status``, from the HTTP thread: the snapshot last published (never half written)."""
        return self._snapshot.render()

    def current_status(self, engine: Mapping[str, Any]) -> Mapping[str, Any]:
        """The engine's view of the session (totals included) and the configuration."""
        return self._own_status().render(engine)

    def _own_status(self) -> _OwnStatus:
        return _OwnStatus(
            self.options,
            self.exchange_name,
            self.draining,
            self.finished,
            self.heartbeat.first_tick_done,
            self.stop_reason,
            self._config(),
        )

    def _config(self) -> Mapping[str, Any]:
        cached = self._config_json
        if cached is None or cached[0] is not self.strategy:
            opts = self.options
            params = dict(self.strategy.params) if self.strategy else opts.params
            cached = self._config_json = (self.strategy, {**opts.to_json(), "params": params})
        return cached[1]

    def liveness(self) -> Probe:
        return self.heartbeat.liveness()

    def readiness(self) -> Probe:
        return self.heartbeat.readiness()

    async def _control(self, name: str) -> None:
        outcome = _engine_control(name)(self.options.symbol, self.options.strategy)
        if inspect.isawaitable(outcome):
            await outcome
        self.publish()

    async def pause(self) -> None:
        await self._control("pause")
        log.info("paused: no new signal opens until resumed")

    async def resume(self) -> None:
        await self._control("resume")
        log.info("resumed")

    async def close_pending(self) -> None:
        await self._control("close_pending")
        log.info("close requested for the open or scheduled signal")

    async def request_stop(self, reason: str | None) -> None:
        """Drain (idempotent): no new signals; ``Live.run`` returns once the open one closed."""
        if not self.draining:
            self.draining = True
            self.stop_reason = reason
            self.metrics.set_draining(True)
            log.info("drain requested%s", f": {reason}" if reason else "")
        await backtest_kit.Live.stop(self.options.symbol, self.options.strategy)
        self.publish()

    def render_metrics(self) -> tuple[bytes, str]:
        return self.metrics.render(), self.metrics.content_type

    # -- the run --------------------------------------------------------------------------------

    async def trade(self) -> None:
        """Run ``Live.run`` to its end, writing yielded results to ``--events``."""
        opts = self.options
        assert self.strategy is not None and self.exchange is not None, "prepare() first"
        assert self.persistence is not None and self.live_clock is not None
        events = self.events
        try:
            async for result in backtest_kit.Live.run(
                opts.symbol,
                strategy=self.strategy.name,
                exchange=self.exchange.name,
                clock=self.live_clock,
                persistence=self.persistence,
                until=to_ms(opts.until) if opts.until is not None else None,
                on_restore=self.on_restore,
                config=self.config,
            ):
                if events is not None:
                    events.append(result.flat())
                line = result_line(result)
                if line is not None:
                    log.info("%s", line)
                if opts.quiet:
                    continue
                if opts.json_lines:
                    sys.stdout.write(json.dumps(result.flat()) + "\n")
                elif line is not None:
                    sys.stdout.write(line + "\n")
                sys.stdout.flush()
        finally:
            if events is not None:
                events.close()


class _OwnStatus(NamedTuple):
    """What ``/status`` shows of the trader itself, as it was when a snapshot was published."""

    options: TraderOptions
    exchange: str
    draining: bool
    finished: bool
    ready: bool
    stop_reason: str | None
    config: Mapping[str, Any]

    def render(self, engine: Mapping[str, Any]) -> dict[str, Any]:
        """``/status``: the engine's status of the session (totals included) and the trader's."""
        opts = self.options
        phase = str(engine.get("phase", "idle"))
        if self.draining and phase in ("idle", "running"):
            phase = "done" if self.finished else "draining"
        elif self.finished:
            phase = "done"
        return {
            "phase": phase,
            "symbol": opts.symbol,
            "strategy": opts.strategy,
            "exchange": self.exchange,
            "openSignal": engine.get("openSignal"),
            "scheduledSignal": engine.get("scheduledSignal"),
            "lastTickAt": engine.get("lastTickAt"),
            "ticks": engine.get("ticks", 0),
            "tickErrors": engine.get("tickErrors", 0),
            **{key: engine.get(key, 0) for key in TOTALS},
            "ready": self.ready,
            "frozen": engine.get("frozen"),
            "paused": bool(engine.get("paused", False)),
            "closeRequested": bool(engine.get("closeRequested", False)),
            "stopReason": self.stop_reason,
            "config": self.config,
        }


class _Snapshot:
    """A published ``/status``, rendered once, when first read (from the HTTP thread): the
    trader's fields and the engine's status, or a view of it that holds only immutable values."""

    __slots__ = ("_engine", "_own", "_rendered")

    def __init__(self, own: _OwnStatus, engine: Any) -> None:
        self._own = own
        self._engine = engine
        self._rendered: Mapping[str, Any] | None = None

    def render(self) -> Mapping[str, Any]:
        rendered = self._rendered
        if rendered is None:  # two readers at once render the same values twice: no harm
            engine = self._engine
            rendered = self._rendered = self._own.render(
                engine if isinstance(engine, Mapping) else engine.to_json()
            )
        return rendered


async def run_live(options: TraderOptions) -> int:
    """The ``live`` subcommand; returns the process exit code."""
    trader = LiveTrader(options)
    trader.prepare()  # ConfigurationError -> exit 2, before the HTTP server and any tick
    token = read_control_token(options.control_token_file)
    if options.drain:
        await trader.request_stop("started in drain mode")
    server = ApiServer(trader, host=options.http_host, port=options.http_port, token=token)
    termination = Termination()
    termination.install()  # before the HTTP thread starts: it must inherit the blocked signals
    trader.subscribe()
    try:
        try:
            await server.start()
        except OSError as exc:
            raise ConfigurationError(
                f"cannot serve the HTTP API on {options.http_host}:{options.http_port}: {exc.strerror or exc}"
            ) from exc
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(trader.trade())
        termination.cancel_on_signal(task)
        try:
            await task
        except asyncio.CancelledError:
            if termination.exit_code is None:
                raise
        if termination.exit_code is not None:
            return termination.exit_code
        trader.finished = True
        trader.publish()
        log.info("live trader finished (%s)", "drained" if trader.draining else "until reached")
        return 0
    finally:
        termination.uninstall()
        trader.unsubscribe()
        await server.close()
        if trader.exchange is not None:
            await trader.exchange.aclose()
