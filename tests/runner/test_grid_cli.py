"""``walker --grid`` and ``walker-task --shards``: a parameter grid from the command line, real runs."""

from __future__ import annotations

import json
from pathlib import Path

from backtest_kit_runner.batch import TERMINATION_MESSAGE_LIMIT, results_message

from .process_runs import run_runner

FRAME = "2024-01-01..2024-01-03"
GRID = "fast=3,5 slow=12..20:8"


def test_a_grid_walk_ranks_every_member_by_the_metric_in_parallel_jobs(tmp_path: Path) -> None:
    out = tmp_path / "walk.json"
    args = ["walker", "--symbol", "SYNUSDT", "--strategies", "sma-cross", "--frame", FRAME]
    done = run_runner([*args, "--grid", GRID, "--jobs", "2", "--metric", "totalPnl", "--json", str(out)])
    assert done.returncode == 0, done.stderr
    data = json.loads(out.read_text(encoding="utf-8"))
    names = [r["strategyName"] for r in data["strategyResults"]]
    assert names == [
        "sma-cross[fast=3,slow=12]",
        "sma-cross[fast=3,slow=20]",
        "sma-cross[fast=5,slow=12]",
        "sma-cross[fast=5,slow=20]",
    ]
    best = max(data["strategyResults"], key=lambda r: r["metricValue"])
    assert data["bestStrategy"] == best["strategyName"] and data["bestMetric"] == best["stats"]["totalPnl"]
    assert f"| 1 | {best['strategyName']} |" in done.stdout
    single = ["backtest", "--symbol", "SYNUSDT", "--strategy", "sma-cross", "--frame", FRAME, "--quiet"]
    one = run_runner([*single, "--params", '{"fast": 5, "slow": 20}', "--output", str(tmp_path / "one.json")])
    assert one.returncode == 0, one.stderr
    alone = json.loads((tmp_path / "one.json").read_text(encoding="utf-8"))
    assert data["strategyResults"][3]["stats"] == alone["stats"]


def test_a_grid_from_the_environment_takes_fixed_params_too(tmp_path: Path) -> None:
    out = tmp_path / "walk.json"
    env = {"BACKTEST_KIT_GRID": "fast=3,5", "BACKTEST_KIT_PARAMS": '{"slow": 12, "minutes": 60}'}
    args = ["walker", "--symbol", "SYNUSDT", "--strategies", "sma-cross", "--frame", FRAME, "--quiet"]
    done = run_runner([*args, "--json", str(out)], env=env)
    assert done.returncode == 0, done.stderr
    names = [r["strategyName"] for r in json.loads(out.read_text(encoding="utf-8"))["strategyResults"]]
    assert names == ["sma-cross[fast=3]", "sma-cross[fast=5]"]


def test_a_bad_grid_exits_2_naming_every_bad_member_before_any_backtest(tmp_path: Path) -> None:
    args = ["walker", "--symbol", "SYNUSDT", "--strategies", "sma-cross", "--frame", FRAME]
    done = run_runner([*args, "--grid", "fast=3,30,40 slow=20,25"])
    assert done.returncode == 2
    assert "4 of 6 members refused by Params" in done.stderr
    for member in ("fast=30,slow=20", "fast=30,slow=25", "fast=40,slow=20", "fast=40,slow=25"):
        assert f"sma-cross[{member}]: fast (" in done.stderr
    assert "fast=3,slow=20]:" not in done.stderr and done.stdout == ""


def test_a_malformed_grid_is_refused_with_the_options_naming_every_bad_axis() -> None:
    args = ["walker", "--symbol", "SYNUSDT", "--strategies", "sma-cross", "--frame", FRAME]
    done = run_runner([*args, "--grid", "fast=3,,5 slow=50..20 nothing"])
    assert done.returncode == 2
    assert "--grid / BACKTEST_KIT_GRID" in done.stderr
    for axis in ("'fast=3,,5'", "'slow=50..20'", "'nothing'"):
        assert axis in done.stderr
    plain = run_runner(
        [
            "walker",
            "--symbol",
            "SYNUSDT",
            "--strategies",
            "a_long_tp1_sl1",
            "--frame",
            FRAME,
            "--grid",
            "x=1,2",
        ]
    )
    assert plain.returncode == 2 and "takes no parameters" in plain.stderr


def test_a_task_share_runs_its_members_and_reports_them_all_in_one_message(tmp_path: Path) -> None:
    out = tmp_path / "termination-log"
    tasks = [
        {"label": f"sma-cross[fast={f},slow={s}]", "strategy": "sma-cross", "params": {"fast": f, "slow": s}}
        for f in (3, 5)
        for s in (12, 20)
    ]
    env = {
        "BACKTEST_KIT_TASKS": json.dumps(tasks),
        "BACKTEST_KIT_SHARDS": "2",
        "JOB_COMPLETION_INDEX": "1",
        "BACKTEST_KIT_SYMBOL": "SYNUSDT",
        "BACKTEST_KIT_FRAME": "2024-01-01T00:00:00Z..2024-01-03T00:00:00Z",
        "BACKTEST_KIT_OUTPUT": str(out),
    }
    done = run_runner(["walker-task"], env=env)
    assert done.returncode == 0, done.stderr
    text = out.read_text(encoding="utf-8")
    assert len(text.encode()) <= TERMINATION_MESSAGE_LIMIT
    rows = json.loads(text)["results"]
    assert [r["label"] for r in rows] == [tasks[1]["label"], tasks[3]["label"]]
    assert all(r["metricValue"] == r["stats"]["sharpeRatio"] and r["strategy"] == "sma-cross" for r in rows)
    far = run_runner(["walker-task"], env={**env, "JOB_COMPLETION_INDEX": "2"})
    assert far.returncode == 2 and "there are 2 shares" in far.stderr


def test_a_share_too_big_for_a_termination_message_keeps_the_key_statistics() -> None:
    stats = {f"stat{i}": 1.2345678 for i in range(40)} | {"totalSignals": 3, "sharpeRatio": 0.5}
    rows = [{"label": f"s[fast={i}]", "metricValue": 0.5, "stats": stats} for i in range(12)]
    text = results_message(rows)
    assert len(text.encode()) <= TERMINATION_MESSAGE_LIMIT
    parsed = json.loads(text)
    assert parsed["statsTruncated"] is True and len(parsed["results"]) == 12
    assert parsed["results"][0]["stats"] == {"totalSignals": 3, "sharpeRatio": 0.5}
