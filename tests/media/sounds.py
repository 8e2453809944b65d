"""Helpers shared by the audio tests."""

from __future__ import annotations

import numpy as np


def with_noise(samples: np.ndarray, snr_db: float, seed: int) -> np.ndarray:
    """The samples with white noise added at ``snr_db`` below their power (seeded)."""
    power = float(np.mean(samples.astype(np.float64) ** 2))
    noise = np.random.default_rng(seed).normal(0.0, np.sqrt(power / 10 ** (snr_db / 10)), samples.size)
    return (samples + noise).astype(np.float32)
