"""Engine configuration: the reference's ``CC_*`` defaults as one frozen, validated value.

Each engine holds one :class:`EngineConfig` and every run reads it once, at its start, and
passes it down; nothing reads a process-wide setting. :func:`merge_config` is how a partial
update becomes a new value: the result is validated as a whole and, on error, nothing
changes, so a typo never leaves an engine half-configured.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import ConfigurationError


class EngineConfig(BaseModel):
    """Every default of ENGINE.md section 1 that the engine uses (snake_case of ``CC_*``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schedule_await_minutes: int = Field(120, gt=0)
    avg_price_candles_count: int = Field(5, gt=0, le=1000)
    percent_slippage: float = Field(0.1, ge=0, lt=100)
    percent_fee: float = Field(0.1, ge=0, lt=100)
    min_takeprofit_distance_percent: float = Field(0.5, ge=0)
    min_stoploss_distance_percent: float = Field(0.5, ge=0)
    max_stoploss_distance_percent: float = Field(20.0, gt=0, le=100)
    max_signal_lifetime_minutes: float = Field(1440, gt=0)
    max_signal_generation_seconds: float = Field(180, gt=0)
    get_candles_retry_count: int = Field(3, ge=1)
    get_candles_retry_delay_ms: int = Field(5000, ge=0)
    max_candles_per_request: int = Field(1000, gt=0)
    get_candles_price_anomaly_threshold_factor: float = Field(1000, gt=1)
    get_candles_min_candles_for_median: int = Field(5, gt=0)
    report_show_signal_note: bool = False
    max_backtest_markdown_rows: int = Field(250, gt=0)
    max_live_markdown_rows: int = Field(250, gt=0)
    walker_markdown_top_n: int = Field(10, gt=0)
    enable_long_signal: bool = True
    enable_short_signal: bool = True
    position_entry_cost: float = Field(100, gt=0)
    #: Extra percent beyond twice (slippage + fee) before breakeven is offered (item 38).
    breakeven_threshold: float = Field(0.2, ge=0)
    #: Let DCA, partial closes and trailing moves happen anywhere (the reference's CC_ENABLE_*).
    enable_dca_everywhere: bool = False
    enable_pppl_everywhere: bool = False
    enable_trailing_everywhere: bool = False
    signal_leverage_multiplier: float = Field(1, gt=0)
    signal_isolated_margin: bool = True
    #: Live: a candle whose high/low is beyond this percent of its window's median close is a
    #: data error, never traded on (0 disables; backtests use the reference's validation only).
    candle_anomaly_band_percent: float = Field(30.0, ge=0, lt=100)
    #: Live: closed/cancelled results kept in memory for get_data/get_report (the oldest go first;
    #: the trader's totals are kept in its record whatever this says).
    live_history_rows: int = Field(1000, gt=0)
    # Ours (ENGINE.md "deliberately differ" 3 and 7).
    live_settle_delay_ms: int = Field(1000, ge=0, le=59_000)
    state_dir: str = "./dump/state"

    @model_validator(mode="after")
    def _check(self) -> EngineConfig:
        if self.min_stoploss_distance_percent >= self.max_stoploss_distance_percent:
            raise ValueError("min_stoploss_distance_percent must be below max_stoploss_distance_percent")
        life = self.max_signal_lifetime_minutes
        if not math.isinf(life) and life != int(life):
            raise ValueError("max_signal_lifetime_minutes must be an integer or infinity")
        return self


_REFERENCE_PREFIX = "CC_"


def _normalise_key(key: str) -> str:
    if key.startswith(_REFERENCE_PREFIX):
        key = key[len(_REFERENCE_PREFIX) :]
    return key.lower()


def merge_config(
    base: EngineConfig, partial: Mapping[str, Any] | None = None, /, **changes: Any
) -> EngineConfig:
    """``base`` with ``changes`` (snake_case, or the reference's ``CC_*`` names), validated whole.

    >>> merge_config(EngineConfig(), percent_fee=0.2).percent_fee
    0.2
    >>> merge_config(EngineConfig(), {"CC_PERCENT_SLIPPAGE": 0}).percent_slippage
    0.0
    """
    merged = dict(partial or {})
    merged.update(changes)
    updates = {_normalise_key(k): v for k, v in merged.items()}
    unknown = sorted(set(updates) - set(EngineConfig.model_fields))
    if unknown:
        raise ConfigurationError(
            f"unknown config keys: {', '.join(unknown)}; known: {', '.join(EngineConfig.model_fields)}"
        )
    try:
        return EngineConfig.model_validate({**base.model_dump(), **updates})
    except ValidationError as exc:
        raise ConfigurationError(f"invalid config: {exc}") from exc
