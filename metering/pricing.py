"""What a request costs: per-model prices per million tokens, applied to an OpenAI usage.

Four token classes are priced separately::

    uncached prompt    = prompt_tokens - cached_tokens         at prompt
    cached prompt      = cached_tokens                         at cached_prompt (default: prompt)
    visible completion = completion_tokens - reasoning_tokens  at completion
    reasoning          = reasoning_tokens                      at reasoning (default: completion)

Money is ``Decimal``, never float: each part is tokens x price / 1,000,000, rounded half-even to
12 decimal places (exact whenever prices have at most 6 decimals), and the total is the sum of
the rounded parts, so the parts shown in an export add up to the total. In records and exports
amounts are decimal strings such as ``"0.000150000000"``.

Config shape (prices per million tokens; numbers or numeric strings; ``"*"`` is a fallback)::

    pricing:
      my-model: {prompt: 0.15, cached_prompt: 0.075, completion: 0.60, reasoning: 0.60}
      "*":      {prompt: 1, completion: 2, currency: EUR}
"""

from __future__ import annotations

import decimal
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from fairgate.metering.errors import PricingError
from fairgate.metering.usage import Usage

DEFAULT_CURRENCY = "USD"
FALLBACK_MODEL = "*"
_PER_MILLION = Decimal(1_000_000)
_QUANTUM = Decimal("1e-12")
_CONTEXT = decimal.Context(prec=60, rounding=decimal.ROUND_HALF_EVEN)
_KEYS = {"prompt", "cached_prompt", "completion", "reasoning", "currency"}


def _price(value: Any, where: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise PricingError(f"{where}: price must be a number, got {value!r}")
    try:
        price = Decimal(str(value))  # str() first: 0.1 must mean 0.1, not its binary float
    except decimal.InvalidOperation:
        raise PricingError(f"{where}: price must be a number, got {value!r}") from None
    if not price.is_finite() or price < 0:
        raise PricingError(f"{where}: price must be a finite number >= 0, got {value!r}")
    return price


def _amount(tokens: int, price_per_million: Decimal) -> Decimal:
    return _CONTEXT.divide(
        _CONTEXT.multiply(Decimal(tokens), price_per_million), _PER_MILLION
    ).quantize(_QUANTUM, context=_CONTEXT)


def format_amount(amount: Decimal) -> str:
    """Plain decimal text, never exponent notation: ``Decimal('1E-12')`` -> ``'0.000000000001'``."""
    return format(amount, "f")


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelPrices:
    """Prices per million tokens of one model."""

    prompt: Decimal
    completion: Decimal
    cached_prompt: Decimal
    reasoning: Decimal
    currency: str = DEFAULT_CURRENCY

    def __post_init__(self) -> None:
        for name in ("prompt", "completion", "cached_prompt", "reasoning"):
            object.__setattr__(self, name, _price(getattr(self, name), f"ModelPrices.{name}"))

    @classmethod
    def from_config(cls, model: str, entry: Mapping[str, Any]) -> ModelPrices:
        where = f"pricing.{model}"
        if not isinstance(entry, Mapping):
            raise PricingError(f"{where}: expected a mapping of prices, got {entry!r}")
        unknown = set(entry) - _KEYS
        if unknown:
            raise PricingError(f"{where}: unknown keys {sorted(unknown)}; allowed {sorted(_KEYS)}")
        for required in ("prompt", "completion"):
            if required not in entry:
                raise PricingError(f"{where}.{required}: missing")
        prompt = _price(entry["prompt"], f"{where}.prompt")
        completion = _price(entry["completion"], f"{where}.completion")
        cached = entry.get("cached_prompt")
        reasoning = entry.get("reasoning")
        currency = entry.get("currency", DEFAULT_CURRENCY)
        if not isinstance(currency, str) or not currency:
            raise PricingError(f"{where}.currency: expected a currency code, got {currency!r}")
        return cls(
            prompt=prompt,
            completion=completion,
            cached_prompt=prompt if cached is None else _price(cached, f"{where}.cached_prompt"),
            reasoning=completion if reasoning is None else _price(reasoning, f"{where}.reasoning"),
            currency=currency,
        )

    def cost(self, usage: Usage) -> Cost:
        """Cost of one request; raises ``ValueError`` for an inconsistent usage."""
        check_usage(usage)
        parts = {
            "prompt": _amount(usage.prompt_tokens - usage.cached_tokens, self.prompt),
            "cached_prompt": _amount(usage.cached_tokens, self.cached_prompt),
            "completion": _amount(
                usage.completion_tokens - usage.reasoning_tokens, self.completion
            ),
            "reasoning": _amount(usage.reasoning_tokens, self.reasoning),
        }
        return Cost(currency=self.currency, total=sum(parts.values(), Decimal(0)), **parts)


def check_usage(usage: Usage) -> None:
    """Raise ``ValueError`` unless counts are >= 0, cached <= prompt, reasoning <= completion."""
    for name in ("prompt_tokens", "cached_tokens", "completion_tokens", "reasoning_tokens"):
        value = getattr(usage, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"usage.{name} must be an int >= 0, got {value!r}")
    if usage.cached_tokens > usage.prompt_tokens:
        raise ValueError(
            f"usage.cached_tokens ({usage.cached_tokens}) > prompt_tokens ({usage.prompt_tokens})"
        )
    if usage.reasoning_tokens > usage.completion_tokens:
        raise ValueError(
            f"usage.reasoning_tokens ({usage.reasoning_tokens}) > "
            f"completion_tokens ({usage.completion_tokens})"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Cost:
    """A request's cost by token class; ``total`` is the sum of the four parts."""

    currency: str
    prompt: Decimal
    cached_prompt: Decimal
    completion: Decimal
    reasoning: Decimal
    total: Decimal

    def __float__(self) -> float:
        """The total, for metrics; money itself stays ``Decimal``."""
        return float(self.total)

    def to_dict(self) -> dict[str, str]:
        return {
            "currency": self.currency,
            "prompt": format_amount(self.prompt),
            "cached_prompt": format_amount(self.cached_prompt),
            "completion": format_amount(self.completion),
            "reasoning": format_amount(self.reasoning),
            "total": format_amount(self.total),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Cost:
        return cls(
            currency=str(data["currency"]),
            **{
                key: Decimal(str(data[key]))
                for key in ("prompt", "cached_prompt", "completion", "reasoning", "total")
            },
        )


class PriceTable:
    """Prices of every configured model; ``"*"`` prices models not listed."""

    def __init__(self, prices: Mapping[str, ModelPrices] | None = None) -> None:
        self._prices = dict(prices or {})

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None) -> PriceTable:
        if config is None:
            return cls()
        if not isinstance(config, Mapping):
            raise PricingError(f"pricing: expected a mapping of model -> prices, got {config!r}")
        return cls(
            {
                str(model): ModelPrices.from_config(str(model), entry)
                for model, entry in config.items()
            }
        )

    def price(self, model: str) -> ModelPrices | None:
        return self._prices.get(model) or self._prices.get(FALLBACK_MODEL)

    def cost(self, model: str, usage: Usage) -> Cost | None:
        """``None`` when the model has no price (and there is no ``"*"`` entry)."""
        price = self.price(model)
        return None if price is None else price.cost(usage)

    def __len__(self) -> int:
        return len(self._prices)
