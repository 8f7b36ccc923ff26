"""A live process killed with SIGKILL at random moments neither duplicates nor forgets a signal."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.live.crashcheck import check_invariants, run_clean, run_with_kills, without_ids

UNTIL = "2024-01-20T00:00:00Z"
MANAGED = str(Path(__file__).resolve().parent / "strategies" / "managed_mix.py")


def test_twenty_kills_and_restarts_keep_every_signal_exactly_once(tmp_path: Path) -> None:
    (tmp_path / "killed").mkdir()
    (tmp_path / "clean").mkdir()
    killed = run_with_kills(tmp_path / "killed", kills=20, until=UNTIL, seed=11)
    assert killed.kills == 20
    counts = check_invariants(killed)
    assert counts["opened"] > 50
    # the totals /status and the metrics show live in the same atomic record: exact after every kill
    totals = (killed.state or {})["totals"]
    closed = [e for e in killed.events if e["action"] == "closed"]
    assert (totals["signalsOpened"], totals["signalsClosed"]) == (counts["opened"], len(closed))
    assert totals["realizedPnlPercentage"] == pytest.approx(sum(e["pnlPercentage"] for e in closed), abs=1e-9)
    clean = run_clean(tmp_path / "clean", until=UNTIL)
    assert without_ids(killed.events) == without_ids(clean.events)


def test_kills_during_managed_positions_lose_no_partial_close_or_entry_and_apply_none_twice(
    tmp_path: Path,
) -> None:
    (tmp_path / "killed").mkdir()
    (tmp_path / "clean").mkdir()
    until = "2024-01-16T00:00:00Z"
    killed = run_with_kills(
        tmp_path / "killed",
        kills=12,
        until=until,
        seed=5,
        strategy="managed_mix",
        load=MANAGED,
        max_delay=0.6,
    )
    assert killed.kills == 12
    check_invariants(killed)
    closed = [r for r in killed.events if r["action"] == "closed"]
    assert sum(len(r["partials"]) for r in closed) > 10 and sum(len(r["entries"]) > 1 for r in closed) > 3
    assert any(r["trailingPriceStopLoss"] is not None for r in closed)
    clean = run_clean(tmp_path / "clean", until=until, strategy="managed_mix", load=MANAGED)
    assert without_ids(killed.events) == without_ids(clean.events)
