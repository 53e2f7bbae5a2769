"""Thresholds and length model from honest traces (generated: do not edit).

Made by ``python -m bench.audit --calibrate`` from 312 honest CHAMP 0-Shot traces
(champ-dataset 1.0.0), blocks of 16 tokens, per-statistic alpha 0.0015.
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
            "4": 0.2133546769618988,
            "8": 0.640255868434906,
            "12": 0.640255868434906,
            "16": 0.640255868434906,
            "24": 0.640255868434906,
            "32": 0.640255868434906,
            "48": 0.640255868434906,
            "64": 0.640255868434906,
            "128": 0.640255868434906,
        },
        "max_duplicates": {
            "1": 0.0,
            "4": 0.42857142857142855,
            "8": 0.2727272727272727,
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
            "4": 0.7032629251480103,
            "8": 0.7364640235900879,
            "12": 0.6878036856651306,
            "16": 0.7110031843185425,
            "24": 0.6726539134979248,
            "32": 0.6205840110778809,
            "48": 0.6205840110778809,
            "64": 0.6205840110778809,
            "128": 0.6205840110778809,
        },
    },
    "length": {
        "coef": [5.927263007005862, -0.0746296521639212, 0.15706642275199353],
        "low_residual": -2.085256827812212,
        "high_residual": 1.3782807929346577,
    },
}

THRESHOLDS = Thresholds.from_dict(CALIBRATION["thresholds"])
LENGTH = LengthModel.from_dict(CALIBRATION["length"])
