"""Deterministic randomness: a function of (seed, time slot, purpose), never of wall time or call order.

That is what makes the same seed and start give the same data however requests interleave.
"""

from __future__ import annotations

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def uniform(seeds: np.ndarray, slot: int | np.ndarray, salt: int) -> np.ndarray:
    """Uniform floats in [0, 1), one per seed, via a splitmix64 finaliser (vectorised, wraps on overflow)."""
    with np.errstate(over="ignore"):
        x = seeds.astype(np.uint64) * _GOLDEN
        x = x + np.uint64(np.int64(slot) & 0x7FFFFFFFFFFFFFFF) * _M1 + np.uint64(salt) * _M2
        x ^= x >> np.uint64(30)
        x *= _M1
        x ^= x >> np.uint64(27)
        x *= _M2
        x ^= x >> np.uint64(31)
    return (x >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def smooth_noise(seeds: np.ndarray, t: float, period_s: float, salt: int) -> np.ndarray:
    """Value noise in [0, 1): random knots every `period_s`, eased in between, so it drifts slowly."""
    position = t / period_s
    knot = int(np.floor(position))
    f = position - knot
    ease = f * f * (3 - 2 * f)
    return uniform(seeds, knot, salt) * (1 - ease) + uniform(seeds, knot + 1, salt) * ease
