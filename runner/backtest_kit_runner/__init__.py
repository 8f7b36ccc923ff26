"""The process in a runner pod: one live trader, its HTTP API and metrics, and batch jobs."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("backtest-kit-operator")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
