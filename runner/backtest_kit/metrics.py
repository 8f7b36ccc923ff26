"""The Walker metrics and the statistic names: the one definition every part derives from.

A Walker ranks strategies by one statistic. Which statistics may be chosen, whether higher or
lower wins, and which key of a run's statistics each one reads are facts the engine, the
runner's options, the operator's spec model, its status table and the CRD schema all need. They
are stated here once; the others import them (Python) or are generated from them (YAML, with a
drift test). The ranking rule itself (ENGINE.md "deliberately differ" 5: ties keep the earlier
entry, ``None`` never wins) lives here too, so the engine's Walker and the operator's Walker
status rank with the same code.

This module imports nothing from the engine but its errors, so the operator can use it without
pulling in the engine's run machinery.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final

from .errors import ConfigurationError

#: Every key of a run's statistics, in report order (``stats.compute_stats`` writes exactly these).
STAT_FIELDS: Final[tuple[str, ...]] = (
    "statsSignalCount",
    "totalSignals",
    "winCount",
    "lossCount",
    "winRate",
    "avgPnl",
    "totalPnl",
    "stdDev",
    "sharpeRatio",
    "annualizedSharpeRatio",
    "certaintyRatio",
    "expectedYearlyReturns",
    "avgPeakPnl",
    "avgFallPnl",
    "sortinoRatio",
    "calmarRatio",
    "recoveryFactor",
    "expectancy",
    "avgDuration",
    "medianPnl",
    "avgConsecutiveWinPnl",
    "avgConsecutiveLossPnl",
    "avgWinDuration",
    "avgLossDuration",
    "maxDrawdown",
    "medianStepSize",
    "buyerPressure",
    "sellerPressure",
    "buyerStrength",
    "sellerStrength",
    "pressureImbalance",
    "trend",
    "trendStrength",
    "trendConfidence",
)


@dataclass(frozen=True, slots=True)
class Metric:
    """One Walker metric: its public name, its direction and the statistic it reads."""

    name: str
    higher_is_better: bool
    stat: str

    @property
    def direction(self) -> str:
        """``"higher"`` or ``"lower"`` (is better), for messages and reports."""
        return "higher" if self.higher_is_better else "lower"


def _metric(name: str, *, lower: bool = False, stat: str | None = None) -> Metric:
    return Metric(name, not lower, stat or name)


#: The Walker metrics, in the order they are listed everywhere (CLI help, CRD enum).
METRIC_DEFINITIONS: Final[tuple[Metric, ...]] = (
    _metric("sharpeRatio"),
    _metric("annualizedSharpeRatio"),
    _metric("winRate"),
    _metric("totalPnl"),
    _metric("certaintyRatio"),
    _metric("avgPnl"),
    _metric("expectedYearlyReturns"),
    _metric("maxDrawdown", lower=True),
    _metric("totalTrades", stat="totalSignals"),
)

METRICS_BY_NAME: Final[Mapping[str, Metric]] = MappingProxyType({m.name: m for m in METRIC_DEFINITIONS})
METRIC_NAMES: Final[tuple[str, ...]] = tuple(METRICS_BY_NAME)
#: metric name -> higher is better.
HIGHER_IS_BETTER: Final[Mapping[str, bool]] = MappingProxyType(
    {m.name: m.higher_is_better for m in METRIC_DEFINITIONS}
)
#: The statistics the metrics read, without repeats, in metric order.
METRIC_STATS: Final[tuple[str, ...]] = tuple(dict.fromkeys(m.stat for m in METRIC_DEFINITIONS))
DEFAULT_METRIC: Final = "sharpeRatio"

if not set(METRIC_STATS) <= set(STAT_FIELDS):  # pragma: no cover - a broken edit of the tables
    raise AssertionError(f"metrics read unknown statistics: {set(METRIC_STATS) - set(STAT_FIELDS)}")


def get_metric(name: str) -> Metric:
    """The metric called ``name``; :class:`ConfigurationError` lists the allowed ones."""
    try:
        return METRICS_BY_NAME[name]
    except KeyError:
        raise ConfigurationError(f"unknown metric {name!r}; allowed: {', '.join(METRIC_NAMES)}") from None


def check_metric_name(name: object) -> str:
    """``name`` if it is a Walker metric (a validator for option and spec models)."""
    if not isinstance(name, str):
        raise ConfigurationError(
            f"a metric is a name, not {type(name).__name__}; allowed: {', '.join(METRIC_NAMES)}"
        )
    return get_metric(name).name


def usable(value: object) -> float | None:
    """The value as a float if it can be ranked, else ``None`` (bools, NaN and infinities cannot)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def metric_value(stats: Mapping[str, Any] | None, metric: str) -> float | None:
    """The metric of ``stats`` as a finite float, or ``None``."""
    stat = get_metric(metric).stat
    if stats is None:
        return None
    return usable(stats.get(stat))


def _higher_wins(metric: str) -> bool:
    found = METRICS_BY_NAME.get(metric)
    return True if found is None else found.higher_is_better


def better(candidate: float | None, best: float | None, metric: str) -> bool:
    """Strictly better; ``None`` never wins and never loses its place to an equal value."""
    if candidate is None:
        return False
    if best is None:
        return True
    return candidate > best if _higher_wins(metric) else candidate < best


def rank_order(metric: str, values: Sequence[object]) -> list[int]:
    """Indices of ``values`` best first; unusable values last; ties keep input order.

    The one statement of the ranking rule: the Walker and the operator's Walker status both rank
    with it.
    """
    lower = not _higher_wins(metric)
    scored = [(i, usable(v)) for i, v in enumerate(values)]
    real = [(i, v) for i, v in scored if v is not None]
    real.sort(key=lambda item: item[1] if lower else -item[1])  # stable: ties keep input order
    return [i for i, _ in real] + [i for i, v in scored if v is None]


def best_index(metric: str, values: Sequence[object]) -> int | None:
    """Index of the winning value, or ``None`` when no value is usable."""
    order = rank_order(metric, values)
    if not order or usable(values[order[0]]) is None:
        return None
    return order[0]
