"""The ranking rule: higher wins except maxDrawdown, ties keep the earlier strategy, null never wins."""

from __future__ import annotations

import math

from backtest_kit.walker import best_index, rank_order


def test_higher_is_better_for_ordinary_metrics() -> None:
    assert rank_order("sharpeRatio", [0.5, 2.0, 1.0]) == [1, 2, 0]
    assert best_index("totalPnl", [-3.0, -1.0]) == 1


def test_lower_is_better_for_max_drawdown() -> None:
    assert rank_order("maxDrawdown", [12.0, 3.5, 7.0]) == [1, 2, 0]


def test_ties_keep_the_earlier_strategy() -> None:
    assert best_index("winRate", [0.6, 0.6, 0.5]) == 0
    assert rank_order("maxDrawdown", [2.0, 1.0, 1.0]) == [1, 2, 0]


def test_null_and_non_finite_values_never_win_and_rank_last() -> None:
    assert best_index("sharpeRatio", [None, 0.1]) == 1
    assert best_index("maxDrawdown", [None, math.nan, 5.0]) == 2
    assert rank_order("sharpeRatio", [None, 1.0, math.inf, 0.5]) == [1, 3, 0, 2]


def test_there_is_no_winner_without_a_usable_value() -> None:
    assert best_index("sharpeRatio", [None, None]) is None
    assert best_index("sharpeRatio", []) is None


def test_booleans_are_not_numbers_for_ranking() -> None:
    assert best_index("totalTrades", [True, 0]) == 1
