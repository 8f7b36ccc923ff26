"""Signals: what a strategy returns, the row the engine tracks, the rules a signal must pass,
and the tick results every mode yields.

The same values flow through backtest and live, are persisted by live mode, and are turned into
the reference's camelCase JSON for events, reports and files.
"""

from __future__ import annotations

import math
import os
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from .candles import iso
from .config import EngineConfig
from .errors import SignalValidationError
from .pnl import Pnl, closed_dollars, entry_history, partial_pnl_percentage, pnl_percentage

_M = TypeVar("_M", bound=BaseModel)
Position = Literal["long", "short"]
CloseReason = Literal["take_profit", "stop_loss", "time_expired", "liquidation", "closed"]
CancelReason = Literal["timeout", "price_reject", "user"]


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


class SignalDto(BaseModel):
    """What ``get_signal`` returns: a market signal, or a limit one when ``price_open`` is set.

    Accepts the reference's camelCase keys too (``priceTakeProfit``...). Types are checked here;
    the trading rules (distances, sides, lifetime) by :func:`validate_signal`, which reports
    every broken rule at once.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True, alias_generator=_camel)

    position: str
    price_take_profit: float
    price_stop_loss: float
    price_open: float | None = None
    minute_estimated_time: float | None = None
    note: str = ""
    id: str | None = None
    symbol: str | None = None
    cost: float | None = None
    multiplier: float | None = None
    isolated: bool | None = None


class Entry(BaseModel):
    """One entry of a position: the opening one, then each average-buy (DCA)."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    price: float
    cost: float
    timestamp: int

    def to_json(self) -> dict[str, Any]:
        return {"price": self.price, "cost": self.cost, "timestamp": self.timestamp}


class Partial(BaseModel):
    """One partial close: ``percent`` of the cost basis that remained at that moment."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    type: Literal["profit", "loss"]
    percent: float
    current_price: float
    cost_basis_at_close: float
    entry_count_at_close: int
    timestamp: int

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "percent": self.percent,
            "currentPrice": self.current_price,
            "costBasisAtClose": self.cost_basis_at_close,
            "entryCountAtClose": self.entry_count_at_close,
            "timestamp": self.timestamp,
        }


class SignalRow(BaseModel):
    """A signal the engine tracks from scheduling or opening until it closes or is cancelled.

    ``price_open``, ``price_stop_loss`` and ``price_take_profit`` are the values the signal was
    opened with; a managed position (docs/ENGINE.md section 9) adds entries, partial closes and
    trailing levels, and the ``*_eff`` properties give the levels in force. The row is frozen:
    every change makes a new row.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    id: str
    symbol: str
    strategy_name: str
    exchange_name: str
    position: Position
    price_open: float  # raw entry (VWAP for market orders, the limit price otherwise)
    price_take_profit: float
    price_stop_loss: float
    minute_estimated_time: float
    scheduled_at: int
    pending_at: int  # 0 until a scheduled signal activates
    note: str = ""
    cost: float = 100.0
    multiplier: float = 1.0
    isolated: bool = True
    is_scheduled: bool = False
    peak_price: float = 0.0
    peak_pnl: float = 0.0
    fall_price: float = 0.0
    fall_pnl: float = 0.0
    #: Every entry, the opening one first (a row restored from an older record may have none:
    #: ``all_entries`` then stands in the opening one, ``price_open`` and ``cost`` at ``scheduled_at``).
    entries: tuple[Entry, ...] = ()
    partials: tuple[Partial, ...] = ()
    trailing_price_stop_loss: float | None = None
    trailing_price_take_profit: float | None = None
    close_note: str | None = None  # "full_partial_close" once partials closed everything

    @property
    def is_long(self) -> bool:
        return self.position == "long"

    @property
    def managed(self) -> bool:
        """Whether partials or added entries make the plain one-entry formulas inapplicable."""
        return bool(self.partials) or len(self.entries) > 1

    @property
    def all_entries(self) -> tuple[Entry, ...]:
        if self.entries:
            return self.entries
        return (Entry.model_construct(price=self.price_open, cost=self.cost, timestamp=self.scheduled_at),)

    @property
    def open_eff(self) -> float:
        """The effective entry (POSITION.md item 9; one entry: ``cost / (cost / price)``)."""
        if not self.managed:
            return self.cost / (self.cost / self.price_open)
        return entry_history(self.all_entries, self.partials, self.price_open)[1]

    @property
    def stop_loss_eff(self) -> float:
        t = self.trailing_price_stop_loss
        return self.price_stop_loss if t is None else t

    @property
    def take_profit_eff(self) -> float:
        t = self.trailing_price_take_profit
        return self.price_take_profit if t is None else t

    @property
    def invested(self) -> float:
        if not self.entries:
            return self.cost
        total = 0.0
        for e in self.entries:
            total += e.cost
        return total

    @property
    def total_entries(self) -> int:
        return len(self.entries) or 1

    @property
    def total_partials(self) -> int:
        return len(self.partials)

    @property
    def remaining_cost_basis(self) -> float:
        return closed_dollars(self.invested, self.all_entries, self.partials)[1]

    @property
    def partial_executed(self) -> float:
        """Percent of the invested dollars closed by partials (item 8)."""
        if not self.partials:
            return 0.0
        invested = self.invested
        return closed_dollars(invested, self.all_entries, self.partials)[0] / invested * 100

    def pnl_percentage_at(self, price: float, *, slippage_percent: float, fee_percent: float) -> float:
        """The net PnL in percent of closing at ``price`` (partial closes weighted in, item 28)."""
        if self.partials:
            return partial_pnl_percentage(
                self.is_long,
                self.all_entries,
                self.partials,
                self.invested,
                price,
                fallback_open=self.price_open,
                slippage_percent=slippage_percent,
                fee_percent=fee_percent,
                multiplier=self.multiplier,
            )
        return pnl_percentage(
            self.is_long,
            self.open_eff,
            price,
            slippage_percent=slippage_percent,
            fee_percent=fee_percent,
            multiplier=self.multiplier,
        )

    def position_json(self) -> dict[str, Any]:
        """The managed-position fields, camelCase (rows, events and the live record)."""
        return {
            "entries": [e.to_json() for e in self.all_entries],
            "partials": [p.to_json() for p in self.partials],
            "trailingPriceStopLoss": self.trailing_price_stop_loss,
            "trailingPriceTakeProfit": self.trailing_price_take_profit,
            "closeNote": self.close_note,
        }

    def to_json(self) -> dict[str, Any]:
        life = self.minute_estimated_time
        return {
            "id": self.id,
            "symbol": self.symbol,
            "strategyName": self.strategy_name,
            "exchangeName": self.exchange_name,
            "position": self.position,
            "priceOpen": self.price_open,
            "priceTakeProfit": self.price_take_profit,
            "priceStopLoss": self.price_stop_loss,
            "minuteEstimatedTime": _minutes_json(life),
            "scheduledAt": self.scheduled_at,
            "pendingAt": self.pending_at,
            "note": self.note,
            "cost": self.cost,
            "multiplier": self.multiplier,
            "isolated": self.isolated,
            "isScheduled": self.is_scheduled,
            "peakPrice": self.peak_price,
            "peakPnlPercentage": self.peak_pnl,
            "fallPrice": self.fall_price,
            "maxDrawdownPnlPercentage": self.fall_pnl,
            **self.position_json(),
        }

    @staticmethod
    def from_json(data: dict[str, Any]) -> SignalRow:
        life = data.get("minuteEstimatedTime")
        return SignalRow(
            id=data["id"],
            symbol=data["symbol"],
            strategy_name=data["strategyName"],
            exchange_name=data["exchangeName"],
            position=data["position"],
            price_open=data["priceOpen"],
            price_take_profit=data["priceTakeProfit"],
            price_stop_loss=data["priceStopLoss"],
            minute_estimated_time=math.inf if life is None else life,
            scheduled_at=data["scheduledAt"],
            pending_at=data["pendingAt"],
            note=data.get("note", ""),
            cost=data.get("cost", 100.0),
            multiplier=data.get("multiplier", 1.0),
            isolated=data.get("isolated", True),
            is_scheduled=data.get("isScheduled", False),
            peak_price=data.get("peakPrice", 0.0),
            peak_pnl=data.get("peakPnlPercentage", 0.0),
            fall_price=data.get("fallPrice", 0.0),
            fall_pnl=data.get("maxDrawdownPnlPercentage", 0.0),
            entries=tuple(
                Entry(price=e["price"], cost=e["cost"], timestamp=e["timestamp"])
                for e in data.get("entries") or ()
            ),
            partials=tuple(
                Partial(
                    type=p["type"],
                    percent=p["percent"],
                    current_price=p["currentPrice"],
                    cost_basis_at_close=p["costBasisAtClose"],
                    entry_count_at_close=p["entryCountAtClose"],
                    timestamp=p["timestamp"],
                )
                for p in data.get("partials") or ()
            ),
            trailing_price_stop_loss=data.get("trailingPriceStopLoss"),
            trailing_price_take_profit=data.get("trailingPriceTakeProfit"),
            close_note=data.get("closeNote"),
        )


class _Ids:
    """Random (version 4) UUID strings, from the OS generator read in bulk.

    ``uuid.uuid4()`` reads 16 bytes with one system call per id, a visible share of a backtest
    that opens a signal every few minutes. A forked child (a Walker worker) starts with an empty
    buffer, so no two processes hand out the same bytes.
    """

    CHUNK = 16 * 256

    def __init__(self) -> None:
        self.buf = b""
        self.pos = 0

    def reset(self) -> None:
        self.buf, self.pos = b"", 0

    def __call__(self) -> str:
        if self.pos >= len(self.buf):
            self.buf, self.pos = os.urandom(self.CHUNK), 0
        raw = bytearray(self.buf[self.pos : self.pos + 16])
        self.pos += 16
        raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
        raw[8] = (raw[8] & 0x3F) | 0x80  # the RFC 4122 variant
        h = raw.hex()
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


#: A new signal id (what ``str(uuid.uuid4())`` gives, faster).
new_id = _Ids()
os.register_at_fork(after_in_child=new_id.reset)


def _minutes_json(life: float) -> float | int | None:
    """JSON has no infinity (``None`` stands for it); whole minutes print as integers."""
    if math.isinf(life):
        return None
    return int(life) if life == int(life) else life


def _num(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


#: Bounds beyond which a number is refused as absurd, not merely unusual (docs/ENGINE.md item 17):
#: a price, a cost in USD, a leverage multiplier.
MAX_PRICE = 1e12
MAX_COST = 1e12
MAX_MULTIPLIER = 1000.0


def row_problems(row: SignalRow) -> list[str]:
    """What makes a (restored) row unusable: the same bounds and sides new signals must meet."""
    msgs: list[str] = []
    levels = {
        "priceOpen": row.price_open,
        "priceTakeProfit": row.price_take_profit,
        "priceStopLoss": row.price_stop_loss,
        "trailingPriceStopLoss": row.trailing_price_stop_loss,
        "trailingPriceTakeProfit": row.trailing_price_take_profit,
    }
    for name, value in levels.items():
        if value is not None and not (_num(value) and 0 < value <= MAX_PRICE):
            msgs.append(f"{name} must be a finite price in (0, {MAX_PRICE:g}], got {value!r}")
    if not (_num(row.cost) and 0 < row.cost <= MAX_COST):
        msgs.append(f"cost must be in (0, {MAX_COST:g}], got {row.cost!r}")
    if not (_num(row.multiplier) and 0 < row.multiplier <= MAX_MULTIPLIER):
        msgs.append(f"multiplier must be in (0, {MAX_MULTIPLIER:g}], got {row.multiplier!r}")
    for e in row.entries:
        if not (_num(e.price) and 0 < e.price <= MAX_PRICE and _num(e.cost) and 0 < e.cost <= MAX_COST):
            msgs.append(f"entry {e.to_json()} is out of range")
    if not msgs:
        long = row.is_long
        if (
            not (row.price_take_profit > row.price_open > row.price_stop_loss)
            if long
            else not (row.price_take_profit < row.price_open < row.price_stop_loss)
        ):
            msgs.append(f"{row.position}: take-profit and stop-loss are not on their sides of priceOpen")
    life = row.minute_estimated_time
    if not (isinstance(life, int | float) and life > 0):
        msgs.append(f"minuteEstimatedTime must be > 0, got {life!r}")
    return msgs


def validate_signal(
    dto: SignalDto,
    *,
    symbol: str,
    current_price: float,
    config: EngineConfig,
) -> None:
    """Check every rule of ENGINE.md item 17; raise one error listing all broken rules."""
    if _plainly_valid(dto, current_price, config):
        return
    msgs = signal_problems(dto, current_price=current_price, config=config)
    if msgs:
        raise SignalValidationError(str(dto.position), symbol, msgs)


def signal_problems(dto: SignalDto, *, current_price: float, config: EngineConfig) -> list[str]:
    """Every rule of ENGINE.md item 17 that ``dto`` breaks, worded (empty: it may trade)."""
    pos = dto.position
    scheduled = dto.price_open is not None
    open_ = dto.price_open if scheduled else current_price
    msgs = _position_problems(pos, config)
    prices = (
        ("priceOpen", open_),
        ("priceTakeProfit", dto.price_take_profit),
        ("priceStopLoss", dto.price_stop_loss),
    )
    bad_prices = [
        f"{name} must be a finite number > 0, got {value!r}"
        for name, value in prices
        if not _num(value) or value is None or value <= 0
    ]
    msgs += bad_prices
    if not bad_prices and pos in ("long", "short") and open_ is not None:
        msgs += _bracket_problems(dto, pos, open_, current_price, config)
    if dto.minute_estimated_time is not None:
        msgs += _lifetime_problems(dto.minute_estimated_time, config)
    if dto.multiplier is not None and not (_num(dto.multiplier) and 0 < dto.multiplier <= MAX_MULTIPLIER):
        msgs.append(f"multiplier must be a finite number in (0, {MAX_MULTIPLIER:g}], got {dto.multiplier!r}")
    if dto.cost is not None and not (_num(dto.cost) and 0 < dto.cost <= MAX_COST):
        msgs.append(f"cost must be a finite number in (0, {MAX_COST:g}], got {dto.cost!r}")
    msgs += [
        f"{name} must be at most {MAX_PRICE:g}, got {value!r}"
        for name, value in prices
        if _num(value) and value is not None and value > MAX_PRICE
    ]
    return msgs


def _plainly_valid(dto: SignalDto, price: float, config: EngineConfig) -> bool:
    """True for the common signal that passes every rule: a market order of floats, with no
    cost or multiplier of its own. Only a quick yes: anything else (or any doubt) goes through
    the full check, which alone words the problems. It accepts nothing that
    :func:`signal_problems` refuses (a test holds it to that)."""
    if dto.price_open is not None or dto.cost is not None or dto.multiplier is not None:
        return False
    tp, sl = dto.price_take_profit, dto.price_stop_loss
    if type(tp) is not float or type(sl) is not float or type(price) is not float:
        return False
    # NaN fails every comparison and infinity the upper bound, so these also prove finiteness
    if not (0 < price <= MAX_PRICE and 0 < tp <= MAX_PRICE and 0 < sl <= MAX_PRICE):
        return False
    if dto.position == "long":
        if not (config.enable_long_signal and sl < price < tp):
            return False
        tp_dist = (tp - price) / price * 100
        sl_dist = (price - sl) / price * 100
    elif dto.position == "short":
        if not (config.enable_short_signal and tp < price < sl):
            return False
        tp_dist = (price - tp) / price * 100
        sl_dist = (sl - price) / price * 100
    else:
        return False
    if (
        tp_dist < config.min_takeprofit_distance_percent
        or sl_dist < config.min_stoploss_distance_percent
        or sl_dist > config.max_stoploss_distance_percent
    ):
        return False
    life = dto.minute_estimated_time
    if life is None:
        return True
    return (
        type(life) in (int, float)
        and math.isfinite(life)  # an endless signal has its own rule: the full check
        and 0 < life <= config.max_signal_lifetime_minutes
        and life == int(life)
    )


def _position_problems(pos: object, config: EngineConfig) -> list[str]:
    if pos not in ("long", "short"):
        return [f"position must be 'long' or 'short', got {pos!r}"]
    if pos == "long" and not config.enable_long_signal:
        return ["long signals are disabled (enable_long_signal=False)"]
    if pos == "short" and not config.enable_short_signal:
        return ["short signals are disabled (enable_short_signal=False)"]
    return []


def _bracket_problems(
    dto: SignalDto, pos: str, open_: float, current_price: float, config: EngineConfig
) -> list[str]:
    """Take-profit and stop-loss on the right sides of the open price, at allowed distances."""
    tp, sl = dto.price_take_profit, dto.price_stop_loss
    msgs: list[str] = []
    if pos == "long":
        if not tp > open_:
            msgs.append(f"long: priceTakeProfit ({tp}) must be above priceOpen ({open_})")
        if not sl < open_:
            msgs.append(f"long: priceStopLoss ({sl}) must be below priceOpen ({open_})")
        tp_dist = (tp - open_) / open_ * 100
        sl_dist = (open_ - sl) / open_ * 100
    else:
        if not tp < open_:
            msgs.append(f"short: priceTakeProfit ({tp}) must be below priceOpen ({open_})")
        if not sl > open_:
            msgs.append(f"short: priceStopLoss ({sl}) must be above priceOpen ({open_})")
        tp_dist = (open_ - tp) / open_ * 100
        sl_dist = (sl - open_) / open_ * 100
    if tp_dist > 0 and tp_dist < config.min_takeprofit_distance_percent:
        msgs.append(
            f"take-profit distance {tp_dist:.4f}% is below the minimum "
            f"{config.min_takeprofit_distance_percent}%"
        )
    if sl_dist > 0 and sl_dist < config.min_stoploss_distance_percent:
        msgs.append(
            f"stop-loss distance {sl_dist:.4f}% is below the minimum {config.min_stoploss_distance_percent}%"
        )
    if sl_dist > config.max_stoploss_distance_percent:
        msgs.append(
            f"stop-loss distance {sl_dist:.4f}% is above the maximum {config.max_stoploss_distance_percent}%"
        )
    # a market order, or a limit order whose price is already reached, opens now: at the
    # current price, so that price must lie inside the bracket (item 17, "market/immediate")
    scheduled = dto.price_open is not None
    reached = scheduled and (
        (pos == "long" and current_price <= open_) or (pos == "short" and current_price >= open_)
    )
    if not scheduled or reached:
        if pos == "long" and not (sl < current_price < tp):
            msgs.append(f"long: current price {current_price} must lie between stop-loss and take-profit")
        if pos == "short" and not (tp < current_price < sl):
            msgs.append(f"short: current price {current_price} must lie between take-profit and stop-loss")
    return msgs


def _lifetime_problems(life: object, config: EngineConfig) -> list[str]:
    if isinstance(life, bool) or not isinstance(life, (int, float)) or math.isnan(life):
        return [f"minuteEstimatedTime must be a number, got {life!r}"]
    if math.isinf(life):
        if life > 0 and math.isinf(config.max_signal_lifetime_minutes):
            return []
        return ["minuteEstimatedTime may be infinite only when max_signal_lifetime_minutes is"]
    msgs: list[str] = []
    if life <= 0:
        msgs.append(f"minuteEstimatedTime must be > 0, got {life}")
    if life != int(life):
        msgs.append(f"minuteEstimatedTime must be a whole number of minutes, got {life}")
    if life > config.max_signal_lifetime_minutes:
        msgs.append(
            f"minuteEstimatedTime {life} exceeds max_signal_lifetime_minutes "
            f"{config.max_signal_lifetime_minutes}"
        )
    return msgs


# --------------------------------------------------------------------------- tick results


class _Result(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    symbol: str
    strategy_name: str
    exchange_name: str
    frame_name: str = ""
    current_price: float
    backtest: bool
    when: int  # epoch ms of the tick (or candle) that produced the result

    def _base(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "strategyName": self.strategy_name,
            "exchangeName": self.exchange_name,
            "frameName": self.frame_name,
            "currentPrice": self.current_price,
            "backtest": self.backtest,
            "when": self.when,
        }


class IdleResult(_Result):
    action: Literal["idle"] = "idle"
    signal: None = None

    def to_json(self) -> dict[str, Any]:
        return {"action": "idle", **self._base(), "signal": None}


class _SignalResult(_Result):
    action: str
    signal: SignalRow

    def flat(self) -> dict[str, Any]:
        """The parity ``signals.json`` row shape (plus ``id``)."""
        s = self.signal
        opened = s.pending_at > 0
        life = s.minute_estimated_time
        return {
            "id": s.id,
            "action": self.action,
            "position": s.position,
            "priceOpen": s.open_eff if opened else s.price_open,
            "originalPriceOpen": s.price_open,
            "priceTakeProfit": s.take_profit_eff,
            "priceStopLoss": s.stop_loss_eff,
            "minuteEstimatedTime": _minutes_json(life),
            "scheduledAt": s.scheduled_at,
            "pendingAt": s.pending_at,
            "closeTimestamp": None,
            "closeReason": None,
            "cancelReason": None,
            "currentPrice": self.current_price,
            "pnlPercentage": None,
            "pnlPriceOpen": None,
            "pnlPriceClose": None,
            "pnlCost": None,
            "pnlEntries": None,
            "peakPnlPercentage": s.peak_pnl,
            "maxDrawdownPnlPercentage": s.fall_pnl,
            "note": s.note,
            "scheduledAtIso": iso(s.scheduled_at),
            "pendingAtIso": iso(s.pending_at) if opened else None,
            "closeIso": None,
            "cost": s.cost,
            "originalPriceStopLoss": s.price_stop_loss,
            "originalPriceTakeProfit": s.price_take_profit,
            "partialExecuted": s.partial_executed,
            "totalEntries": s.total_entries,
            "totalPartials": s.total_partials,
            **s.position_json(),
        }

    def to_json(self) -> dict[str, Any]:
        return {"action": self.action, **self._base(), "signal": self.signal.to_json()}


class ScheduledResult(_SignalResult):
    action: Literal["scheduled"] = "scheduled"


class OpenedResult(_SignalResult):
    action: Literal["opened"] = "opened"


class ActiveResult(_SignalResult):
    action: Literal["active"] = "active"


class ClosedResult(_SignalResult):
    action: Literal["closed"] = "closed"
    close_reason: CloseReason
    close_timestamp: int
    pnl: Pnl

    def flat(self) -> dict[str, Any]:
        row = super().flat()
        p = self.pnl
        row.update(
            closeTimestamp=self.close_timestamp,
            closeReason=self.close_reason,
            pnlPercentage=p.pnl_percentage,
            pnlPriceOpen=p.price_open,
            pnlPriceClose=p.price_close,
            pnlCost=p.pnl_cost,
            pnlEntries=p.pnl_entries,
            closeIso=iso(self.close_timestamp),
        )
        return row

    def to_json(self) -> dict[str, Any]:
        return {
            **super().to_json(),
            "closeReason": self.close_reason,
            "closeTimestamp": self.close_timestamp,
            "pnl": self.pnl.to_json(),
        }


class CancelledResult(_SignalResult):
    action: Literal["cancelled"] = "cancelled"
    cancel_reason: CancelReason
    close_timestamp: int

    def flat(self) -> dict[str, Any]:
        row = super().flat()
        row.update(
            closeTimestamp=self.close_timestamp,
            cancelReason=self.cancel_reason,
            peakPnlPercentage=0,
            maxDrawdownPnlPercentage=0,
            closeIso=iso(self.close_timestamp),
        )
        return row

    def to_json(self) -> dict[str, Any]:
        return {
            **super().to_json(),
            "cancelReason": self.cancel_reason,
            "closeTimestamp": self.close_timestamp,
        }


TickResult = Annotated[
    IdleResult | ScheduledResult | OpenedResult | ActiveResult | ClosedResult | CancelledResult,
    Field(discriminator="action"),
]
AnyResult = IdleResult | ScheduledResult | OpenedResult | ActiveResult | ClosedResult | CancelledResult
#: A result that carries a signal (every action but ``idle``).
SignalResult = _SignalResult


def build(cls: type[_M], /, **values: Any) -> _M:
    """Construct an engine-made (already valid) model without re-validating it.

    ``model_construct`` is general and slow; the engine builds tens of thousands of rows and
    results per backtest, always with every field known to be valid, so it fills defaults
    and sets the instance state directly.
    """
    known = _DEFAULTS.get(cls)
    if known is None:  # (``model_fields`` is a computed property: read it once per class)
        fields = cls.model_fields
        defaults = {name: f.default for name, f in fields.items() if not f.is_required()}
        known = defaults, len(fields), set(fields)
        _DEFAULTS[cls] = known
    defaults, count, every = known
    data = {**defaults, **values} if len(values) < count else values
    obj = cls.__new__(cls)
    object.__setattr__(obj, "__dict__", data)
    # Every field is set (defaults filled in), and all objects of the class share one set: a
    # set per object would be a third of a backtest's memory. Nothing mutates it in place
    # (the models are frozen; pydantic's model_copy copies it before adding to it).
    object.__setattr__(obj, "__pydantic_fields_set__", every)
    object.__setattr__(obj, "__pydantic_extra__", None)
    object.__setattr__(obj, "__pydantic_private__", None)
    return obj


_DEFAULTS: dict[type[BaseModel], tuple[dict[str, Any], int, set[str]]] = {}


def updated(model: _M, update: dict[str, Any]) -> _M:
    """``model.model_copy(update=update)`` for engine-made models, without pydantic's generic
    copy machinery (a backtest copies a row or two per signal). Not validated, like model_copy."""
    obj = model.__class__.__new__(model.__class__)
    object.__setattr__(obj, "__dict__", {**model.__dict__, **update})
    fields_set = model.__pydantic_fields_set__
    if not update.keys() <= fields_set:  # (an engine-made model already has all: share its set)
        fields_set = fields_set | update.keys()
    object.__setattr__(obj, "__pydantic_fields_set__", fields_set)
    object.__setattr__(obj, "__pydantic_extra__", None)
    object.__setattr__(obj, "__pydantic_private__", None)
    return obj
