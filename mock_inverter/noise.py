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


class SeededNoise:
    """uniform() and smooth_noise() of one array of seeds, remembered by (slot, salt).

    Successive ticks ask for the same knots and slots (a knot lasts a minute or more of simulated time, a tick
    a second), so most draws are found here; the values are the very arrays uniform() returns, never changed.
    """

    MEMO_SIZE = 64

    def __init__(self, seeds: np.ndarray):
        self.seeds = seeds
        self._memo: dict[tuple[int, int], np.ndarray] = {}

    def uniform(self, slot: int, salt: int) -> np.ndarray:
        key = (int(slot), salt)
        value = self._memo.get(key)
        if value is None:
            if len(self._memo) >= self.MEMO_SIZE:
                self._memo.clear()
            value = self._memo[key] = uniform(self.seeds, key[0], salt)
            value.flags.writeable = False
        return value

    def smooth(self, t: float, period_s: float, salt: int) -> np.ndarray:
        """smooth_noise(seeds, t, period_s, salt)."""
        position = t / period_s
        knot = int(np.floor(position))
        f = position - knot
        ease = f * f * (3 - 2 * f)
        return self.uniform(knot, salt) * (1 - ease) + self.uniform(knot + 1, salt) * ease
