"""The name installed ``backtest-kit`` scripts made before the command moved to :mod:`.cli` import.

An editable install keeps its generated script until it is reinstalled; this keeps such a script
working. New installs point at ``backtest_kit_runner.cli:main``.
"""

from .cli import main

__all__ = ["main"]
