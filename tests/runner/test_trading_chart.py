"""The trading chart, drawn for real: the CLI writes the HTML, headless Chromium renders it.

Plotly draws in the browser, so the only proof that the panes and the trade markers appear is a
browser's DOM after the plot ran: ``chromium --headless --dump-dom`` with a virtual time budget
lets plotly.js (embedded in the file, no network) finish, then the SVG is counted.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .process_runs import runner_env

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium; .ci/run installs it)"
)


def rendered_dom(html: Path) -> str:
    assert CHROMIUM is not None
    res = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--virtual-time-budget=15000",
            "--dump-dom",
            html.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout


def trace_groups(dom: str) -> list[tuple[str, str]]:
    """``(kind, svg text)`` of every plotly trace group, in drawing order."""
    parts = dom.split('<g class="trace ')[1:]
    return [(p.split('"', 1)[0].split()[0], p) for p in parts]


@needs_chromium
def test_the_chart_draws_candles_trades_volume_equity_and_drawdown(tmp_path: Path) -> None:
    chart, out = tmp_path / "chart.html", tmp_path / "out.json"
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "backtest_kit_runner",
            "backtest",
            "--symbol",
            "SYNUSDT",
            "--strategy",
            "d_sma_cross",
            "--exchange",
            "synthetic",
            "--frame",
            "2024-01-01..2024-01-10",
            "--chart",
            str(chart),
            "--json",
            str(out),
            "--quiet",
        ],
        env=runner_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    html = chart.read_text(encoding="utf-8")
    assert not re.search(r"<script[^>]+src=\"https?:", html)  # plotly.js is embedded: works offline
    trades = [r for r in json.loads(out.read_text())["signals"] if r["action"] == "closed"]
    assert trades

    dom = rendered_dom(chart)
    assert sorted(set(re.findall(r'class="(x\d*y\d*)"', dom))) == ["x2y2", "x3y3", "x4y4", "xy"]  # 4 panes
    legend = re.findall(r'class="legendtext"[^>]*>([^<]*)<', dom)
    assert legend == ["price", "entries", "exits", "volume", "equity", "drawdown"]
    groups = trace_groups(dom)
    assert [kind for kind, _ in groups] == ["boxes", "scatter", "scatter", "bars", "scatter", "scatter"]
    candles = groups[0][1].count('class="box"')
    assert candles == 960  # 10 days resampled to 15m candles (at most ~2000 drawn)
    assert groups[1][1].count('class="point"') == len(trades)  # one entry marker per trade
    assert groups[2][1].count('class="point"') == len(trades)  # and one exit marker
    assert groups[3][1].count('class="point"') == candles  # a volume bar per candle
    assert re.search(r'class="js-line"[^>]*d="M', groups[4][1])  # the equity line is drawn
    # every marker's hover names the side, TP/SL and the close reason with its result
    first = trades[-1]
    assert f"{first['closeReason']}: {first['pnlPercentage']:+.2f} %" in html
    assert "TP " in html and "SL " in html


def test_unsupported_chart_formats_are_refused_before_the_run(tmp_path: Path) -> None:
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "backtest_kit_runner",
            "backtest",
            "--symbol",
            "SYNUSDT",
            "--strategy",
            "a_long_tp1_sl1",
            "--frame",
            "2024-01-01..2024-01-02",
            "--chart",
            str(tmp_path / "c.jpg"),
        ],
        env=runner_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert res.returncode == 2 and "--chart" in res.stderr and res.stdout == ""
    assert list(tmp_path.iterdir()) == []
