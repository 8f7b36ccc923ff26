"""Live mode: the tick loop, stop semantics, restore after restart, and failure handling."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import backtest_kit as bk
from backtest_kit.candles import MINUTE_MS, to_ms
from backtest_kit.live import state_key
from backtest_kit.synthetic import SyntheticExchange

START = to_ms(datetime(2024, 1, 1, tzinfo=UTC))
SYM = "SYNUSDT"


@pytest.fixture
def names() -> Iterator[list[str]]:
    created: list[str] = []
    yield created
    registry = bk.default_engine().registry
    for n in created:
        registry.strategies.items.pop(n, None)
        registry.exchanges.items.pop(n, None)


def strategy(names: list[str], name: str, fn: Any, interval: str = "1m") -> str:
    bk.add_strategy(name, interval=interval, get_signal=fn)
    names.append(name)
    return name


def replay(persist: bk.PersistenceAdapter | None = None, start: int = START) -> bk.ReplayClock:
    return bk.ReplayClock(start, float("inf"), persistence=persist)


async def collect(gen: Any, limit: int = 1000) -> list[Any]:
    out = []
    try:
        async for r in gen:
            out.append(r)
            if len(out) >= limit:
                break
    finally:
        await gen.aclose()  # like a killed consumer: the generator's state stays on disk
    return out


class TestStopSemantics:
    async def test_an_idle_trader_stops_at_the_next_tick(self, names: list[str]) -> None:
        calls = []

        async def never(symbol: str, when: datetime, price: float) -> None:
            calls.append(when)
            return None

        name = strategy(names, "live_never", never)
        await bk.Live.stop(SYM, name)  # requested before the run: it drains at once
        results = await collect(
            bk.Live.run(
                SYM, strategy=name, exchange="synthetic", clock=replay(), persistence=bk.MemoryPersistence()
            )
        )
        assert results == []
        assert calls == []
        assert bk.Live.get_status(SYM, name)["phase"] == "done"

    async def test_an_open_signal_closes_before_the_trader_stops(self, names: list[str]) -> None:
        name = strategy(names, "live_open_then_stop", bk.examples.a_long_tp1_sl1)
        seen: list[str] = []
        gen = bk.Live.run(
            SYM, strategy=name, exchange="synthetic", clock=replay(), persistence=bk.MemoryPersistence()
        )
        async for r in gen:
            seen.append(r.action)
            if r.action == "opened":
                await bk.Live.stop(SYM, name)
                await bk.Live.stop(SYM, name)  # idempotent
                assert bk.Live.get_status(SYM, name)["phase"] == "draining"
        assert seen == ["opened", "closed"]
        assert bk.Live.get_status(SYM, name)["phase"] == "done"

    async def test_a_scheduled_signal_is_activated_and_closed_or_cancelled_before_stopping(
        self, names: list[str]
    ) -> None:
        alternating = bk.examples.AlternatingLimit()
        name = strategy(names, "live_sched_then_stop", alternating, interval="15m")
        seen: list[str] = []
        stopped = False

        def on_signal(r: Any) -> None:
            nonlocal stopped
            if r.action == "scheduled" and not stopped:
                stopped = True
                bk.Live.request_stop(SYM, name)

        unsubscribe = bk.listen_signal_live(on_signal)
        try:
            async for r in bk.Live.run(
                SYM, strategy=name, exchange="synthetic", clock=replay(), persistence=bk.MemoryPersistence()
            ):
                seen.append(r.action)
        finally:
            unsubscribe()
        assert seen in (["cancelled"], ["opened", "closed"])
        assert bk.Live.get_status(SYM, name)["openSignal"] is None


class TestRestore:
    async def test_a_restart_restores_the_open_signal_without_asking_the_strategy_again(
        self, names: list[str], tmp_path: Path
    ) -> None:
        calls: list[datetime] = []

        async def once(symbol: str, when: datetime, price: float) -> bk.SignalDto | None:
            calls.append(when)
            return bk.SignalDto(
                position="long",
                price_take_profit=price * 1.02,
                price_stop_loss=price * 0.98,
                minute_estimated_time=600,
                id="only-one",
            )

        name = strategy(names, "live_restore", once)
        persist = bk.FilePersistence(tmp_path)
        first = await collect(
            bk.Live.run(SYM, strategy=name, exchange="synthetic", clock=replay(persist), persistence=persist),
            limit=1,
        )
        assert first[0].action == "opened" and len(calls) == 1
        record = json.loads((tmp_path / f"{state_key(SYM, name, 'synthetic')}.json").read_text())
        assert record["pending"]["id"] == "only-one"
        restored_events: list[Any] = []
        gen = bk.Live.run(
            SYM,
            strategy=name,
            exchange="synthetic",
            clock=replay(persist),
            persistence=persist,
            on_restore=restored_events.append,
        )
        second = await collect(gen, limit=1)
        assert restored_events[0]["id"] == "only-one" and restored_events[0]["action"] == "opened"
        assert second[0].action == "closed" and second[0].signal.id == "only-one"
        assert len(calls) == 1, "get_signal must not be called while a restored signal is open"

    async def test_a_corrupt_state_file_is_moved_aside_reported_and_blocks_new_signals(
        self, names: list[str], tmp_path: Path
    ) -> None:
        calls: list[datetime] = []

        async def eager(symbol: str, when: datetime, price: float) -> bk.SignalDto:
            calls.append(when)
            return bk.SignalDto(position="long", price_take_profit=price * 1.01, price_stop_loss=price * 0.99)

        name = strategy(names, "live_corrupt", eager)
        path = tmp_path / f"{state_key(SYM, name, 'synthetic')}.json"
        path.parent.mkdir(parents=True)
        path.write_text('{"version": 1, "pending": {"id": "x", "pri')  # truncated by a crash
        errors: list[BaseException] = []
        unsubscribe = bk.listen_error(errors.append)
        persist = bk.FilePersistence(tmp_path)
        try:
            gen = bk.Live.run(
                SYM,
                strategy=name,
                exchange="synthetic",
                clock=replay(),
                persistence=persist,
                until=START + 30 * MINUTE_MS,
            )
            results = await collect(gen)
        finally:
            unsubscribe()
        assert results == [] and calls == []
        assert any(isinstance(e, bk.CorruptStateError) for e in errors)
        aside = list(path.parent.glob(f"{path.name}.corrupt-*"))
        assert len(aside) == 1 and aside[0].read_text().startswith('{"version": 1')
        assert bk.Live.get_status(SYM, name)["frozen"]


class TestTickLoop:
    async def test_every_tick_reports_its_duration_as_live_tick(self, names: list[str]) -> None:
        async def never(symbol: str, when: datetime, price: float) -> None:
            return None

        name = strategy(names, "live_perf", never)
        events: list[Any] = []
        unsubscribe = bk.listen_performance(events.append)
        try:
            await collect(
                bk.Live.run(
                    SYM,
                    strategy=name,
                    exchange="synthetic",
                    clock=replay(),
                    persistence=bk.MemoryPersistence(),
                    until=START + 10 * MINUTE_MS,
                )
            )
        finally:
            unsubscribe()
        ticks = [e for e in events if e.metric == "live_tick"]
        assert len(ticks) == 10
        assert all(e.duration_s >= 0 for e in ticks)
        assert [e.timestamp for e in ticks] == [START + i * MINUTE_MS for i in range(10)]

    async def test_an_exchange_outage_is_reported_and_the_loop_goes_on(self, names: list[str]) -> None:
        market = SyntheticExchange()
        down = {"minutes": range(START + 3 * MINUTE_MS, START + 6 * MINUTE_MS)}
        state: dict[str, int] = {"when": 0}

        async def flaky(symbol: str, interval: str, since: datetime, limit: int) -> Any:
            if state["when"] in down["minutes"]:
                raise ConnectionError("exchange down")
            return await market.get_candles(symbol, interval, since, limit)

        bk.set_config(get_candles_retry_count=1, get_candles_retry_delay_ms=0)
        bk.add_exchange("flaky_live", get_candles=flaky)
        names.append("flaky_live")

        async def never(symbol: str, when: datetime, price: float) -> None:
            return None

        name = strategy(names, "live_outage", never)
        errors: list[BaseException] = []
        unsub = [bk.listen_error(errors.append)]

        def track(e: Any) -> None:
            state["when"] = e.timestamp + MINUTE_MS  # the next tick's minute

        unsub.append(bk.listen_performance(track))
        state["when"] = START
        try:
            await collect(
                bk.Live.run(
                    SYM,
                    strategy=name,
                    exchange="flaky_live",
                    clock=replay(),
                    persistence=bk.MemoryPersistence(),
                    until=START + 10 * MINUTE_MS,
                )
            )
        finally:
            for u in unsub:
                u()
        status = bk.Live.get_status(SYM, name)
        assert status["ticks"] == 10 and status["tickErrors"] == 3
        assert all(isinstance(e, bk.ExchangeUnavailableError) for e in errors)
        assert "since=" in str(errors[0])


def _mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    res = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
    )
    return res.returncode == 0


def _umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True)


needs_mount = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")


@needs_mount
class TestStorageFailures:
    def test_a_read_only_state_directory_gives_a_clear_error_and_keeps_the_state(
        self, tmp_path: Path
    ) -> None:
        mnt = tmp_path / "ro"
        if not _mount_tmpfs(mnt, "1m"):
            pytest.skip("tmpfs mount refused here")
        try:
            (mnt / "live").mkdir()
            kept = mnt / "live" / "SYNUSDT_a_long_tp1_sl1_synthetic.json"
            kept.write_text('{"version": 1, "pending": null}')
            subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
            res = _run_cli(mnt)
            assert res.returncode == 1
            assert "not writable" in res.stderr and "Read-only file system" in res.stderr
            assert kept.read_text() == '{"version": 1, "pending": null}'
        finally:
            _umount(mnt)

    def test_a_full_disk_gives_a_clear_error_and_loses_nothing_already_written(self, tmp_path: Path) -> None:
        import signal
        import sys
        import time

        mnt = tmp_path / "full"
        if not _mount_tmpfs(mnt, "256k"):
            pytest.skip("tmpfs mount refused here")
        try:
            events = tmp_path / "events.jsonl"
            cmd = [*_cli_args(mnt, until="2024-01-02T00:00:00Z", speed="1200"), "--events", str(events)]
            proc = subprocess.Popen([sys.executable, *cmd], stderr=subprocess.PIPE, text=True)
            state = mnt / "live" / "SYNUSDT_a_long_tp1_sl1_synthetic.json"
            deadline = time.monotonic() + 60
            while not (events.exists() and '"opened"' in events.read_text()):
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.05)
            before = state.read_text()
            assert json.loads(before)["pending"] is not None
            _fill(mnt / "filler")
            time.sleep(6)  # a few virtual hours: the signal closes, the close cannot be written
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=30)
            assert "the disk is full" in err and "the previous state is kept unchanged" in err
            assert state.read_text() == before, "the last good state must survive a full disk"
            assert not list(state.parent.glob(".tmp-*")), "no partial temp file may be left behind"
            again = _run_cli(mnt)
            assert again.returncode == 1 and "not writable (the disk is full)" in again.stderr
            assert state.read_text() == before
        finally:
            _umount(mnt)


def _fill(path: Path) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:  # fill the disk to the last byte
        for size in (65536, 4096, 512, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                pass
    finally:
        os.close(fd)


def _cli_args(state: Path, until: str, speed: str = "max") -> list[str]:
    return [
        "-m",
        "backtest_kit_runner",
        "live",
        "--http-port",
        "0",
        "--http-host",
        "127.0.0.1",
        "--symbol",
        SYM,
        "--strategy",
        "a_long_tp1_sl1",
        "--exchange",
        "synthetic",
        "--state-dir",
        str(state),
        "--replay-from",
        "2024-01-01T00:00:00Z",
        "--speed",
        speed,
        "--until",
        until,
        "--quiet",
    ]


def _run_cli(state: Path, until: str = "2024-01-01T01:00:00Z") -> subprocess.CompletedProcess[str]:
    import sys

    return subprocess.run(
        [sys.executable, *_cli_args(state, until)], capture_output=True, text=True, timeout=120
    )


def test_background_returns_a_callable_that_drains(names: list[str]) -> None:
    name = strategy(names, "live_background", bk.examples.a_long_tp1_sl1)

    async def main() -> list[str]:
        seen: list[str] = []
        unsubscribe = bk.listen_signal_live(lambda r: seen.append(r.action) if r.action != "active" else None)
        cancel = bk.Live.background(
            SYM, strategy=name, exchange="synthetic", clock=replay(), persistence=bk.MemoryPersistence()
        )
        while "opened" not in seen:
            await asyncio.sleep(0)
        task = cancel()
        await asyncio.wait_for(task, 30)
        unsubscribe()
        return seen

    seen = asyncio.run(main())
    assert seen[-1] == "closed" and seen.count("opened") == 1


async def test_live_reports_and_ticks_on_a_longer_period(names: list[str], tmp_path: Path) -> None:
    name = strategy(names, "live_period", bk.examples.a_long_tp1_sl1)
    ticks: list[int] = []
    unsubscribe = bk.listen_performance(
        lambda e: ticks.append(e.timestamp) if e.metric == "live_tick" else None
    )
    try:
        results = await collect(
            bk.Live.run(
                SYM,
                strategy=name,
                exchange="synthetic",
                clock=replay(start=START + 2 * MINUTE_MS),
                persistence=bk.MemoryPersistence(),
                until=START + 6 * 60 * MINUTE_MS,
                tick_ms=5 * MINUTE_MS,
            )
        )
    finally:
        unsubscribe()
    assert ticks[0] == START and all(b - a == 5 * MINUTE_MS for a, b in itertools.pairwise(ticks))
    assert any(r.action == "closed" for r in results)
    stats = await bk.Live.get_data(SYM, name)
    assert stats["totalSignals"] == sum(1 for r in results if r.action == "closed")
    report = await bk.Live.get_report(SYM, name)
    assert report.startswith(f"# Live Report: {name}")
    path = await bk.Live.dump(SYM, name, tmp_path)
    assert path.read_text() == report
    with pytest.raises(bk.ConfigurationError, match="whole number of minutes"):
        await collect(bk.Live.run(SYM, strategy=name, exchange="synthetic", tick_ms=90_000))
