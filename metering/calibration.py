"""Thresholds and length model from honest traces (generated: do not edit).

Made by ``python -m bench.audit --calibrate`` from 229 honest CHAMP 0-Shot traces
(champ-dataset 1.0.0), blocks of 16 tokens, per-statistic alpha 0.002.
"""

from __future__ import annotations

from typing import Any

from fairgate.metering.estimator import LengthModel
from fairgate.metering.semantic import Thresholds

CALIBRATION: dict[str, Any] = {
    "thresholds": {
        "block_floor": 0.16,
        "dup_cosine": 0.995,
        "near_cosine": 0.9,
        "adjacent_floor": 0.0,
        "max_off_topic": {
            "1": 0.0,
            "4": 0.13238124549388885,
            "8": 0.15089938044548035,
            "12": 0.15089939534664154,
            "16": 0.2765468657016754,
            "24": 0.2947740852832794,
            "32": 0.3204303979873657,
            "48": 0.3204303979873657,
            "64": 0.3204303979873657,
            "128": 0.3204303979873657,
        },
        "max_duplicates": {
            "1": 0.0,
            "4": 0.3333333333333333,
            "8": 0.25,
            "12": 0.38461538461538464,
            "16": 0.47368421052631576,
            "24": 0.75,
            "32": 0.9166666666666666,
            "48": 0.9166666666666666,
            "64": 0.9166666666666666,
            "128": 0.9166666666666666,
        },
        "max_near_share": {
            "1": 0.0,
            "4": 0.7142857142857143,
            "8": 0.75,
            "12": 0.8461538461538461,
            "16": 0.8421052631578947,
            "24": 0.8928571428571429,
            "32": 0.9166666666666666,
            "48": 0.9166666666666666,
            "64": 0.9166666666666666,
            "128": 0.9166666666666666,
        },
        "max_incoherent": {
            "1": 0.0,
            "4": 0.0,
            "8": 1.0,
            "12": 1.0,
            "16": 1.0,
            "24": 1.0,
            "32": 1.0,
            "48": 1.0,
            "64": 1.0,
            "128": 1.0,
        },
        "max_drift": {
            "1": 0.2505175471305847,
            "4": 0.7014276385307312,
            "8": 0.6835495233535767,
            "12": 0.6353505253791809,
            "16": 0.6326711177825928,
            "24": 0.6354600191116333,
            "32": 0.6205840110778809,
            "48": 0.6205840110778809,
            "64": 0.6205840110778809,
            "128": 0.6205840110778809,
        },
    },
    "length": {
        "coef": [6.297708142734755, -0.18793763027168608, 0.2099043214686123],
        "low_residual": -2.083808322956739,
        "high_residual": 1.4531148024600498,
    },
}

THRESHOLDS = Thresholds.from_dict(CALIBRATION["thresholds"])
LENGTH = LengthModel.from_dict(CALIBRATION["length"])
