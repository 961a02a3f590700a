"""Interval estimates: Wilson for rates, percentile bootstrap for means and paired differences."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

Z95 = 1.959963984540054


@dataclass(frozen=True)
class Estimate:
    value: float
    low: float
    high: float
    n: int

    def fmt(self, pct: bool = True, signed: bool = False) -> str:
        if self.n == 0 or math.isnan(self.value):
            return "n/a"
        scale, unit = (100, "%") if pct else (1, "")
        sign = "+" if signed else ""
        return f"{self.value * scale:{sign}.1f}{unit} [{self.low * scale:{sign}.1f}, {self.high * scale:{sign}.1f}]"

    def excludes_zero(self) -> bool:
        return self.n > 0 and (self.low > 0 or self.high < 0)


NA = Estimate(float("nan"), float("nan"), float("nan"), 0)


def wilson(k: int, n: int) -> Estimate:
    """Wilson score interval for k successes in n trials (95%)."""
    if n == 0:
        return NA
    p = k / n
    denom = 1 + Z95**2 / n
    center = (p + Z95**2 / (2 * n)) / denom
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n)) / denom
    return Estimate(p, max(0.0, center - half), min(1.0, center + half), n)


def bootstrap_mean(values, n_boot: int = 2000, seed: int = 0) -> Estimate:
    """Mean with a 95% percentile-bootstrap interval. For paired differences pass the per-unit differences."""
    x = np.asarray(list(values), dtype=float)
    if x.size == 0:
        return NA
    if x.size == 1:
        return Estimate(float(x[0]), float(x[0]), float(x[0]), 1)
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return Estimate(float(x.mean()), float(low), float(high), int(x.size))


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x > -700 else 0.0
