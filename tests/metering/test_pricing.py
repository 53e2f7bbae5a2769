"""Costs in Decimal: four token classes, exact amounts, config errors that name the key."""

from __future__ import annotations

from decimal import Decimal

import pytest

from fairgate.metering.errors import PricingError
from fairgate.metering.pricing import ModelPrices, PriceTable
from fairgate.metering.usage import Usage

USAGE = Usage(prompt_tokens=1000, cached_tokens=400, completion_tokens=300, reasoning_tokens=200)


def test_each_token_class_at_its_price() -> None:
    table = PriceTable.from_config(
        {"m": {"prompt": 0.15, "cached_prompt": "0.075", "completion": 0.6, "reasoning": 2}}
    )
    cost = table.cost("m", USAGE)
    assert cost is not None
    assert cost.prompt == Decimal("0.00009")  # 600 uncached x 0.15 / 1e6
    assert cost.cached_prompt == Decimal("0.00003")  # 400 x 0.075 / 1e6
    assert cost.completion == Decimal("0.00006")  # 100 visible x 0.6 / 1e6
    assert cost.reasoning == Decimal("0.0004")  # 200 x 2 / 1e6
    assert cost.total == Decimal("0.00058")
    assert cost.to_dict() == {
        "currency": "USD",
        "prompt": "0.000090000000",
        "cached_prompt": "0.000030000000",
        "completion": "0.000060000000",
        "reasoning": "0.000400000000",
        "total": "0.000580000000",
    }
    assert float(cost) == pytest.approx(0.00058)


def test_defaults_cached_at_prompt_price_reasoning_at_completion_price() -> None:
    price = ModelPrices.from_config("m", {"prompt": 1, "completion": 10})
    assert price.cached_prompt == Decimal(1)
    assert price.reasoning == Decimal(10)
    cost = price.cost(USAGE)
    assert cost.total == Decimal("0.004")  # 1000 x 1 / 1e6 + 300 x 10 / 1e6


def test_parts_add_up_to_the_total_after_rounding() -> None:
    price = ModelPrices(
        prompt=Decimal("0.1234567"), completion=Decimal("0.7654321"),
        cached_prompt=Decimal("0.0000001"), reasoning=Decimal("3.3333333"),
    )  # fmt: skip
    cost = price.cost(Usage(7, 3, 11, 5))
    assert cost.total == cost.prompt + cost.cached_prompt + cost.completion + cost.reasoning
    assert all(part.as_tuple().exponent == -12 for part in (cost.prompt, cost.reasoning))


def test_unknown_model_and_fallback() -> None:
    assert PriceTable.from_config({"m": {"prompt": 1, "completion": 1}}).cost("x", USAGE) is None
    table = PriceTable.from_config({"*": {"prompt": 1, "completion": 1, "currency": "EUR"}})
    cost = table.cost("anything", USAGE)
    assert cost is not None and cost.currency == "EUR"


@pytest.mark.parametrize(
    ("config", "names"),
    [
        ({"m": {"prompt": -1, "completion": 1}}, "pricing.m.prompt"),
        ({"m": {"prompt": "abc", "completion": 1}}, "pricing.m.prompt"),
        ({"m": {"prompt": 1}}, "pricing.m.completion"),
        ({"m": {"prompt": 1, "completion": 1, "reasoning": float("inf")}}, "pricing.m.reasoning"),
        ({"m": {"prompt": 1, "completion": 1, "extra": 1}}, "pricing.m"),
        ({"m": {"prompt": True, "completion": 1}}, "pricing.m.prompt"),
        ({"m": [1, 2]}, "pricing.m"),
    ],
)
def test_config_errors_name_the_key(config: dict[str, object], names: str) -> None:
    with pytest.raises(PricingError, match=names.replace(".", r"\.")):
        PriceTable.from_config(config)


def test_inconsistent_usage_is_refused() -> None:
    price = ModelPrices.from_config("m", {"prompt": 1, "completion": 1})
    with pytest.raises(ValueError, match="cached_tokens"):
        price.cost(Usage(prompt_tokens=1, cached_tokens=2))
    with pytest.raises(ValueError, match="reasoning_tokens"):
        price.cost(Usage(completion_tokens=1, reasoning_tokens=2))
