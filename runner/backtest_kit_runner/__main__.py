"""``python -m backtest_kit_runner``: the runner image's entry point (see :mod:`.process`)."""

from .process import main

raise SystemExit(main())
