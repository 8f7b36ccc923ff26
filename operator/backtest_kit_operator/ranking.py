"""The Walker ranking rule, on its own so that it is stated (and tested) exactly once.

Higher is better for every metric except ``maxDrawdown``, where lower is better. Ties keep the
earlier strategy (spec order), and a missing value (``None``, or a non-finite number) never wins:
it ranks after every real value and gets no rank number.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

LOWER_IS_BETTER = frozenset({"maxDrawdown"})


def usable(value: object) -> float | None:
    """The value as a float if it can be ranked, else None (bools, NaN and infinities cannot)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def rank_order(metric: str, values: Sequence[object]) -> list[int]:
    """Indices of ``values`` from best to worst; unusable values last, each group in input order."""
    lower = metric in LOWER_IS_BETTER
    scored = [(i, usable(v)) for i, v in enumerate(values)]
    real = [(i, v) for i, v in scored if v is not None]
    # sorted() is stable, so equal values keep spec order: ties go to the earlier strategy.
    real.sort(key=lambda item: item[1] if lower else -item[1])
    return [i for i, _ in real] + [i for i, v in scored if v is None]


def best_index(metric: str, values: Sequence[object]) -> int | None:
    """Index of the winning value, or None when no value is usable."""
    order = rank_order(metric, values)
    if not order or usable(values[order[0]]) is None:
        return None
    return order[0]
