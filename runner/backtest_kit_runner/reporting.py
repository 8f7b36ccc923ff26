"""What a person at a shell reads when something goes wrong: one line per problem, said once.

A strategy that raises usually raises on every ask, thousands of times a run; printing each one
buries the only useful line (where in *their* file it failed). The engine reports every failed
ask as an error event (``SignalGenerationError`` whose ``__cause__`` is what ``get_signal``
raised), so :class:`ErrorTally` prints the first of each kind with the user's ``file:line`` and
counts the rest ("raised 2,879 more times"). A signal the engine refused for its shape (a dict
with the wrong keys, a pydantic ``ValidationError``) is summarised to the field names. Anything
else (bad data, an exchange down) is one actionable line; its traceback only with ``--debug``.
"""

from __future__ import annotations

import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from pydantic import ValidationError

import backtest_kit

#: Files under these directories are ours or the interpreter's, never the user's strategy.
_NOT_USER = tuple(
    str(p)
    for p in (
        Path(backtest_kit.__file__).resolve().parent,
        Path(__file__).resolve().parent,
        Path(traceback.__file__).resolve().parent,  # the standard library (and site-packages below it)
    )
)
_reported: set[int] = set()


def was_reported(exc: BaseException) -> bool:
    """Whether an :class:`ErrorTally` already printed ``exc`` (the CLI then does not repeat it)."""
    return id(exc) in _reported


def user_location(exc: BaseException) -> str | None:
    """``file:line in function`` of the innermost frame of ``exc``'s traceback in the user's code."""
    found: str | None = None
    for frame in traceback.extract_tb(exc.__traceback__):
        path = str(Path(frame.filename).resolve())
        if not path.startswith(_NOT_USER) and not frame.filename.startswith("<"):
            found = f"{frame.filename}:{frame.lineno} in {frame.name}"
    return found


def pydantic_summary(exc: ValidationError) -> str:
    """``missing a, b; unknown c; d: <why>`` from a validation error, by field name."""
    missing: list[str] = []
    unknown: list[str] = []
    other: list[str] = []
    for err in exc.errors(include_url=False):
        name = ".".join(str(p) for p in err.get("loc", ())) or "(value)"
        kind = err.get("type")
        if kind == "missing":
            missing.append(name)
        elif kind == "extra_forbidden":
            unknown.append(name)
        else:
            other.append(f"{name}: {err.get('msg', 'invalid')}")
    parts = [f"missing {', '.join(missing)}"] if missing else []
    parts += [f"unknown {', '.join(unknown)}"] if unknown else []
    return "; ".join(parts + other)


def describe(exc: BaseException) -> tuple[str, str | None]:
    """A key grouping repeats of one problem, and its one-line description with the user's location."""
    cause = exc.__cause__
    if isinstance(cause, ValidationError):
        head = str(exc).split(":", 1)[0]  # "strategy 'x' get_signal returned an invalid signal"
        return f"{head}: {pydantic_summary(cause)}", None
    if cause is not None and type(exc).__name__ == "SignalGenerationError":
        where = user_location(cause)
        strategy = str(exc).split(" get_signal", 1)[0]
        text = f"{strategy} get_signal raised {type(cause).__name__}: {cause}"
        return text, where
    return str(exc), None


@dataclass
class ErrorTally:
    """Listener for ``backtest_kit.listen_error``: first of each problem printed, repeats counted."""

    stream: TextIO = field(default_factory=lambda: sys.stderr)
    debug: bool = False
    counts: dict[str, int] = field(default_factory=dict)

    def __call__(self, exc: BaseException) -> None:
        key, where = describe(exc)
        _reported.add(id(exc))
        seen = self.counts.get(key, 0)
        self.counts[key] = seen + 1
        if seen:
            return
        self.stream.write(f"\nerror: {key}\n" if self.stream.isatty() else f"error: {key}\n")
        if where:
            self.stream.write(f"  at {where}\n")
        if self.debug:
            self.stream.write("".join(traceback.format_exception(exc)))
        self.stream.flush()

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def finish(self) -> None:
        """Say how often each problem came back."""
        for key, count in self.counts.items():
            if count > 1:
                self.stream.write(f"error: {_short(key)} (raised {count - 1:,} more times)\n")
        self.stream.flush()


def _short(key: str, width: int = 100) -> str:
    return key if len(key) <= width else key[: width - 1] + "…"


def failure_line(exc: BaseException, *, debug: bool) -> str:
    """The one line the CLI prints for a failed run (plus the traceback with ``--debug``)."""
    if debug:
        return "".join(traceback.format_exception(exc)) + f"error: {exc}\n"
    if isinstance(exc, backtest_kit.BacktestKitError):
        return f"error: {exc}\n"
    return f"error: unexpected {type(exc).__name__}: {exc} (run with --debug for the traceback)\n"
