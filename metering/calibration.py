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
            "8": 0.2133546769618988,
            "12": 0.4329124093055725,
            "16": 0.5908861756324768,
            "24": 0.5908861756324768,
            "32": 0.7498935461044312,
            "48": 0.7498935461044312,
            "64": 0.7498935461044312,
            "128": 0.7498935461044312,
        },
        "max_duplicates": {
            "1": 0.0,
            "4": 0.42857142857142855,
            "8": 0.25,
            "12": 0.4166666666666667,
            "16": 0.5882352941176471,
            "24": 0.8,
            "32": 0.851063829787234,
            "48": 0.8823529411764706,
            "64": 0.8823529411764706,
            "128": 0.8823529411764706,
        },
        "max_near_share": {
            "1": 0.0,
            "4": 0.8571428571428571,
            "8": 0.625,
            "12": 0.8571428571428571,
            "16": 0.9130434782608695,
            "24": 0.9285714285714286,
            "32": 0.9090909090909091,
            "48": 0.8823529411764706,
            "64": 0.8823529411764706,
            "128": 0.8823529411764706,
        },
        "max_incoherent": {
            "1": 0.0,
            "4": 0.0,
            "8": 1.0,
            "12": 1.0,
            "16": 1.0,
            "24": 1.0,
            "32": 1.0,
            "48": 2.0,
            "64": 2.0,
            "128": 2.0,
        },
        "max_drift": {
            "1": 0.2505175471305847,
            "4": 0.7212956547737122,
            "8": 0.715386688709259,
            "12": 0.7367470860481262,
            "16": 0.7110031843185425,
            "24": 0.6726539134979248,
            "32": 0.649807333946228,
            "48": 0.5860910415649414,
            "64": 0.5860910415649414,
            "128": 0.5860910415649414,
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
