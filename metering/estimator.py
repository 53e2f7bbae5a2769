"""A user-side estimate of the hidden count from the prompt and the answer (PALACE-style).

PALACE (arXiv 2508.00912) predicts the length of a model's hidden reasoning from what the user
sees. This is its simplest form: a least-squares fit of ``log(hidden tokens)`` on
``log(prompt characters)`` and ``log(answer characters)``, per model (and a pooled default),
fit on honest traces, with the range ``exp(fit ± q)`` where ``q`` is the residual quantile that
holds all but ``alpha`` of the honest traces. A bill above the range is a flag of its own: it
needs no challenge, though it is weak alone (honest reasoning lengths vary several-fold).

Characters, not tokens: the auditor may not hold the model's tokenizer.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fairgate.metering.audit_report import Finding, Reason, Severity


def _features(prompt: str, answer: str) -> tuple[float, float, float]:
    return (1.0, math.log1p(len(prompt)), math.log1p(len(answer)))


@dataclass(frozen=True, slots=True)
class LengthRange:
    low: int
    expected: int
    high: int

    def to_dict(self) -> dict[str, int]:
        return {"low": self.low, "expected": self.expected, "high": self.high}


@dataclass(frozen=True, slots=True)
class LengthModel:
    coef: tuple[float, float, float]
    low_residual: float  # negative
    high_residual: float

    def predict(self, prompt: str, answer: str) -> LengthRange:
        mid = sum(c * x for c, x in zip(self.coef, _features(prompt, answer), strict=True))
        return LengthRange(
            low=max(0, math.floor(math.exp(mid + self.low_residual))),
            expected=round(math.exp(mid)),
            high=math.ceil(math.exp(mid + self.high_residual)),
        )

    def check(self, billed: int, prompt: str, answer: str) -> Finding | None:
        expected = self.predict(prompt, answer)
        if billed <= expected.high:
            return None
        return Finding(
            Reason.LENGTH_OUTLIER,
            f"{billed} hidden tokens billed; prompt and answer predict {expected.low}.."
            f"{expected.high} (expected {expected.expected})",
            severity=Severity.FAIL,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "coef": list(self.coef),
            "low_residual": self.low_residual,
            "high_residual": self.high_residual,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LengthModel:
        a, b, c = (float(x) for x in data["coef"])
        return cls((a, b, c), float(data["low_residual"]), float(data["high_residual"]))


def _solve3(m: list[list[float]], v: list[float]) -> tuple[float, float, float]:
    """Gaussian elimination for the 3x3 normal equations (no numpy needed at fit time)."""
    a = [[*row, v[i]] for i, row in enumerate(m)]
    for col in range(3):
        pivot = max(range(col, 3), key=lambda r: abs(a[r][col]))
        a[col], a[pivot] = a[pivot], a[col]
        if abs(a[col][col]) < 1e-12:
            raise ValueError("degenerate fit: the traces' lengths do not vary")
        for r in range(3):
            if r != col:
                f = a[r][col] / a[col][col]
                a[r] = [x - f * y for x, y in zip(a[r], a[col], strict=True)]
    return (a[0][3] / a[0][0], a[1][3] / a[1][1], a[2][3] / a[2][2])


def fit(
    samples: Sequence[tuple[str, str, int]], alpha: float = 0.0025, ridge: float = 1e-6
) -> LengthModel:
    """Fit on honest ``(prompt, answer, hidden tokens)``; the range holds all but ``alpha``."""
    rows = [(_features(p, a), math.log(max(n, 1))) for p, a, n in samples]
    if len(rows) < 8:
        raise ValueError("need at least 8 honest traces to fit a length model")
    m = [
        [sum(x[i] * x[j] for x, _ in rows) + (ridge if i == j else 0) for j in range(3)]
        for i in range(3)
    ]
    v = [sum(x[i] * y for x, y in rows) for i in range(3)]
    coef = _solve3(m, v)
    residuals = sorted(y - sum(c * xi for c, xi in zip(coef, x, strict=True)) for x, y in rows)
    top = residuals[min(len(residuals) - 1, math.ceil((1 - alpha) * len(residuals)))]
    bottom = residuals[max(0, math.floor(alpha * len(residuals)))]
    return LengthModel(coef, bottom, top)
