"""A live process killed with SIGKILL at random moments neither duplicates nor forgets a signal."""

from __future__ import annotations

from pathlib import Path

from tests.live.crashcheck import check_invariants, run_clean, run_with_kills, without_ids

UNTIL = "2024-01-20T00:00:00Z"


def test_twenty_kills_and_restarts_keep_every_signal_exactly_once(tmp_path: Path) -> None:
    (tmp_path / "killed").mkdir()
    (tmp_path / "clean").mkdir()
    killed = run_with_kills(tmp_path / "killed", kills=20, until=UNTIL, seed=11)
    assert killed.kills == 20
    counts = check_invariants(killed)
    assert counts["opened"] > 50
    clean = run_clean(tmp_path / "clean", until=UNTIL)
    assert without_ids(killed.events) == without_ids(clean.events)
