"""The process in a runner pod: one live trader, its HTTP API and metrics, and batch jobs."""

from typing import Any

__all__ = ["__version__"]


def __getattr__(name: str) -> Any:
    # the installed version is read when first asked for (metrics, --version), not at every start
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            found = version("backtest-kit-operator")
        except PackageNotFoundError:  # running from a source tree that was never installed
            found = "0.0.0+unknown"
        globals()["__version__"] = found
        return found
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
