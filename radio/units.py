"""Unit conversions, used only at the edges (configs in dBm/dB, maths in W)."""

from __future__ import annotations

import numpy as np


def dbm_to_w(dbm: float | np.ndarray) -> float | np.ndarray:
    """Power in dBm -> W."""
    return 10.0 ** ((np.asarray(dbm, dtype=np.float64) - 30.0) / 10.0)


def w_to_dbm(w: float | np.ndarray) -> float | np.ndarray:
    """Power in W -> dBm."""
    return 10.0 * np.log10(np.asarray(w, dtype=np.float64)) + 30.0


def noise_power_w(noise_psd_dbm_hz: float, bandwidth_hz: float, noise_figure_db: float) -> float:
    """Receiver noise power N0 * W * NF in W (paper 1, Table I: -150 dBm/Hz, 20 MHz, 9 dB)."""
    return float(dbm_to_w(noise_psd_dbm_hz + 10.0 * np.log10(bandwidth_hz) + noise_figure_db))
