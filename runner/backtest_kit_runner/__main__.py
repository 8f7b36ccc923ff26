"""``python -m backtest_kit_runner``: the runner image's entry point, the ``backtest-kit`` command."""

from .cli import main

raise SystemExit(main())
