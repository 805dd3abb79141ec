"""Household load and sky: base load, morning and evening peaks, appliance spikes, drifting clouds."""

from __future__ import annotations

import numpy as np

from .noise import SeededNoise

SPIKE_SLOT_S = 300.0
CLOUD_PERIOD_S = 1200.0
SALT_SPIKE, SALT_SPIKE_SIZE, SALT_JITTER, SALT_CLOUD, SALT_PEAK_SHIFT = 1, 2, 3, 4, 5


def household_load(
    t: float,
    local_hour: np.ndarray,
    noise: SeededNoise,
    base_w: np.ndarray,
    morning_w: np.ndarray,
    evening_w: np.ndarray,
    spike_w: np.ndarray,
    spikes_per_hour: np.ndarray,
) -> np.ndarray:
    # Each household keeps its own habits: peaks shifted by up to +-45 min, fixed per seed.
    shift = (noise.uniform(0, SALT_PEAK_SHIFT) - 0.5) * 1.5
    morning = morning_w * np.exp(-0.5 * ((local_hour - 7.5 - shift) / 1.0) ** 2)
    evening = evening_w * np.exp(-0.5 * ((local_hour - 19.5 - shift) / 1.6) ** 2)
    jitter = 0.85 + 0.3 * noise.smooth(t, 60.0, SALT_JITTER)
    slot = int(t // SPIKE_SLOT_S)
    spiking = noise.uniform(slot, SALT_SPIKE) < spikes_per_hour * SPIKE_SLOT_S / 3600.0
    spikes = np.where(spiking, spike_w * (0.4 + 0.6 * noise.uniform(slot, SALT_SPIKE_SIZE)), 0.0)
    return (base_w * jitter + morning + evening + spikes).clip(min=0.0)


def cloud_factor(t: float, weather: SeededNoise, cloudiness: np.ndarray) -> np.ndarray:
    """Share of clear-sky PV that gets through: 1 on a clear sky, down to 1 - cloudiness under clouds."""
    return 1.0 - cloudiness * weather.smooth(t, CLOUD_PERIOD_S, SALT_CLOUD)
