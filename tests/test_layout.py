"""The repository layout the project promises: source roots that do not shadow the stdlib."""

from __future__ import annotations

import operator
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_operator_is_still_the_standard_library() -> None:
    assert Path(operator.__file__).parent == Path(sysconfig.get_paths()["stdlib"])
    assert operator.add(2, 3) == 5
    # also in a fresh interpreter started from the repository root, where `operator/` is a folder
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import operator, backtest_kit_operator; print(operator.__file__, operator.itemgetter)",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "itemgetter" in out.stdout and str(ROOT / "operator") not in out.stdout.split()[0]


def test_source_roots_have_no_init_and_hold_the_three_packages() -> None:
    assert not (ROOT / "operator" / "__init__.py").exists()
    assert not (ROOT / "runner" / "__init__.py").exists()
    for pkg in ("runner/backtest_kit", "runner/backtest_kit_runner", "operator/backtest_kit_operator"):
        assert (ROOT / pkg / "__init__.py").is_file()


def test_the_top_level_holds_what_the_project_promises() -> None:
    for name in ("pyproject.toml", "operator", "runner", "crds", "charts", "tests", "README.md", ".ci/run"):
        assert (ROOT / name).exists(), name
