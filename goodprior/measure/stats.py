"""Interval estimates: Wilson for rates, percentile bootstrap for means and paired differences."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

Z95 = 1.959963984540054
Z80 = 0.8416212335729143  # one-sided z of 80% power


@dataclass(frozen=True)
class Estimate:
    value: float
    low: float
    high: float
    n: int

    def fmt(self, pct: bool = True, signed: bool = False, digits: int | None = None) -> str:
        if self.n == 0 or math.isnan(self.value):
            return "n/a"
        scale, unit = (100, "%") if pct else (1, "")
        sign = "+" if signed else ""
        d = (1 if pct else 2) if digits is None else digits
        return f"{self.value * scale:{sign}.{d}f}{unit} [{self.low * scale:{sign}.{d}f}, {self.high * scale:{sign}.{d}f}]"

    def as_dict(self) -> dict[str, float | int | None]:
        clean = lambda v: None if math.isnan(v) else round(v, 6)
        return {"value": clean(self.value), "low": clean(self.low), "high": clean(self.high), "n": self.n}

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


def mde(diffs, alpha_z: float = Z95, power_z: float = Z80) -> float:
    """Minimum detectable effect of a mean of paired differences: the true mean a two-sided test at alpha = 0.05
    detects with 80% power, (z_0.975 + z_0.80) * sd / sqrt(n), with the sample sd of the observed differences."""
    x = np.asarray(list(diffs), dtype=float)
    if x.size < 2:
        return float("nan")
    return float((alpha_z + power_z) * x.std(ddof=1) / math.sqrt(x.size))


def bootstrap_slope(xs: list[float], columns: list[list[float]], n_boot: int = 2000, seed: int = 0) -> Estimate:
    """Least-squares slope of a mean against x, with a percentile-bootstrap interval over units. `columns[k]` are
    the per-unit values at xs[k], the same units in the same order at every x (so resampling keeps them paired)."""
    y = np.asarray(columns, dtype=float)  # (len(xs), units)
    if len(xs) < 2 or y.shape[1] == 0:
        return NA
    xc = np.asarray(xs, dtype=float) - np.mean(xs)

    def slope(means: np.ndarray) -> np.ndarray:
        return (xc @ (means - means.mean(axis=0))) / (xc @ xc)

    rng = np.random.default_rng(seed)
    idx = rng.integers(0, y.shape[1], size=(n_boot, y.shape[1]))
    boot = slope(y[:, idx].mean(axis=2))  # (n_boot,)
    low, high = np.percentile(boot, [2.5, 97.5])
    return Estimate(float(slope(y.mean(axis=1, keepdims=True))[0]), float(low), float(high), int(y.shape[1]))
