"""The README's examples run as written, and the ones that say they trade produce trades.

Each block the README claims runnable is marked by a ``<!-- readme-test: KIND [NAME] -->``
comment right before it (invisible on a rendered page). ``python NAME.py`` blocks are the files
the next blocks use; other python blocks run as scripts; bash blocks run in a fresh directory
whose ``.venv`` is this one, so ``.venv/bin/backtest-kit`` is the command a reader types.
The one block that talks to Binance runs against the local fake Binance server instead.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.exchanges.fake_binance import FakeBinance, serve_fake_binance

from .process_runs import runner_env

ROOT = Path(__file__).resolve().parents[2]
MARKED = re.compile(r"<!-- readme-test: (\w+) ?([^>]*?) -->\n```(\w+)\n(.*?)```", re.S)


@dataclass(frozen=True)
class Block:
    kind: str
    name: str
    text: str


def readme_blocks() -> list[Block]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = [Block(m.group(1), m.group(2).strip(), m.group(4)) for m in MARKED.finditer(text)]
    for m in MARKED.finditer(text):
        assert m.group(1) == m.group(3), f"readme-test {m.group(1)} marks a {m.group(3)} block"
    return blocks


def block(name: str, kind: str | None = None) -> Block:
    found = [b for b in readme_blocks() if b.name == name and (kind is None or b.kind == kind)]
    assert len(found) == 1, f"README has {len(found)} blocks marked {name!r}"
    return found[0]


@pytest.fixture
async def binance() -> AsyncIterator[FakeBinance]:
    async with serve_fake_binance() as fake:
        yield fake


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / ".venv").symlink_to(Path(sys.prefix))
    return tmp_path


def run(cmd: list[str], cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(
        cmd, cwd=cwd, env=runner_env(), capture_output=True, text=True, timeout=timeout, check=False
    )
    assert res.returncode == 0, (
        f"{cmd[:3]}: exit {res.returncode}\n{res.stdout[-2000:]}\n{res.stderr[-3000:]}"
    )
    return res


def test_the_readme_marks_its_runnable_examples() -> None:
    names = [(b.kind, b.name) for b in readme_blocks()]
    assert ("python", "my_strategies.py") in names and ("bash", "trades") in names
    assert {"notebook", "async", "walker", "data"} <= {n for _, n in names}
    # snippets are plain scripts: no top-level await anywhere in the README's python
    for b in readme_blocks():
        if b.kind == "python":
            assert not re.search(r"^(async for|await) ", b.text, re.M), b.text[:80]


def test_the_example_strategy_backtests_as_written_and_trades(workdir: Path) -> None:
    strategy = block("my_strategies.py", "python")
    (workdir / "my_strategies.py").write_text(strategy.text, encoding="utf-8")
    res = run(["bash", "-euo", "pipefail", "-c", block("trades", "bash").text], workdir)
    out = json.loads((workdir / "out.json").read_text())
    closed = [r for r in out["signals"] if r["action"] == "closed"]
    assert len(closed) >= 20, f"the README's breakout made {len(closed)} trades"
    assert out["asks"] > len(closed) and out["signalErrors"] == 0
    assert out["summary"]["trades"] == len(closed) == out["stats"]["totalSignals"]
    assert res.stdout.startswith("# Backtest Report: breakout")
    assert (workdir / "report.md").read_text() == res.stdout
    assert 'id="backtest-chart"' in (workdir / "chart.html").read_text()


@pytest.mark.parametrize("name", ["notebook", "async", "walker"])
def test_the_python_examples_run_as_plain_scripts(workdir: Path, name: str) -> None:
    script = workdir / f"{name}.py"
    script.write_text(block(name, "python").text, encoding="utf-8")
    res = run([sys.executable, str(script)], workdir)
    assert res.stdout.strip()
    if name == "notebook":
        assert (workdir / "chart.html").stat().st_size > 100_000  # plotly.js is embedded


def test_the_walker_command_runs_as_written(workdir: Path) -> None:
    walker = [b for b in readme_blocks() if b.kind == "bash" and "backtest-kit walker" in b.text]
    assert len(walker) == 2
    run(["bash", "-euo", "pipefail", "-c", walker[0].text], workdir)
    data = json.loads((workdir / "walk.json").read_text())
    assert data["bestStrategy"] in {"a_long_tp1_sl1", "c_limit_sched", "d_sma_cross"}


def test_the_grid_command_ranks_all_sixteen_members_as_written(workdir: Path) -> None:
    grid = [b for b in readme_blocks() if b.kind == "bash" and "--grid" in b.text]
    assert len(grid) == 1
    done = run(["bash", "-euo", "pipefail", "-c", grid[0].text], workdir)
    ranked = [line for line in done.stdout.splitlines() if line.startswith("| ") and "sma-cross[" in line]
    assert len(ranked) == 10 and ranked[0].startswith("| 1 | sma-cross[fast=")  # the report's top 10
    assert done.stderr.count("sma-cross[") >= 16  # one progress line per member


async def test_the_data_example_downloads_then_backtests_offline(workdir: Path, binance: FakeBinance) -> None:
    import asyncio

    text = block("data", "bash").text
    assert "--exchange binance " in text
    script = text.replace("--exchange binance ", f"--exchange binance:{binance.url} ")
    proc = await asyncio.create_subprocess_exec(
        "bash",
        "-euo",
        "pipefail",
        "-c",
        script,
        cwd=workdir,
        env={**runner_env(), "PATH": os.environ.get("PATH", "")},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 180)
    assert proc.returncode == 0, err.decode()[-3000:]
    months = sorted(p.name for p in (workdir / "candles" / "binance" / "BTCUSDT" / "1m").iterdir())
    assert months == ["2023-12.parquet", "2024-01.parquet"]
    assert out.decode().count("# Backtest Report: d_sma_cross") == 1
    assert "| Trades |" in out.decode()
