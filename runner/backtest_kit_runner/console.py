"""The ``backtest-kit`` command: the engine's subcommands plus ``run`` (the runner process).

The engine cannot import the runner (layering), so the console script lives here: ``run``
goes to the runner, everything else to ``backtest_kit.cli``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from backtest_kit import cli

from . import process

RUN_HELP = "  run        the runner process (same as python -m backtest_kit_runner; see 'run --help')\n"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "run":
        return process.main(args[1:])
    if not args or args[0] in ("-h", "--help"):
        code = 0
        try:
            cli.main(args or ["--help"])
        except SystemExit as exc:
            code = int(exc.code or 0)
        sys.stdout.write("\nalso:\n" + RUN_HELP)
        return code if args else 2
    return cli.main(args)


if __name__ == "__main__":
    raise SystemExit(main())
