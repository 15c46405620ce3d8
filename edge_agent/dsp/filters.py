"""Causal IIR filters that keep their state between chunks.

Every design returns second-order sections, so a filter can be run chunk by chunk with
`scipy.signal.sosfilt` and give the same output as one call on the whole signal.
Designs check their parameters against the sampling rate and raise `ValueError` at
construction, naming the parameter and the limit.
"""

import logging
import math

import numpy as np
from scipy import signal

logger = logging.getLogger(__name__)

# Sampling rates the analyser supports and its tests cover (Hz).
MIN_SAMPLE_RATE_HZ = 125.0
MAX_SAMPLE_RATE_HZ = 1000.0

# Quality factor of the mains notch: at Q = 30 the -3 dB width is about 1.7 Hz at 50 Hz,
# narrow enough to leave QRS energy alone and wide enough for mains frequency drift.
MAINS_NOTCH_Q = 30.0

# Baseline wander (breathing, electrode drift) lies below about 0.5 Hz. A 0.5 Hz corner
# is the usual monitoring-mode high-pass.
BASELINE_CUTOFF_HZ = 0.5
BASELINE_ORDER = 2

# Most QRS energy lies between 5 and 15 Hz. The band attenuates P and T waves, baseline
# wander and muscle noise.
QRS_LOW_HZ = 5.0
QRS_HIGH_HZ = 15.0
QRS_ORDER = 2

# Band edges must stay below this fraction of Nyquist, so the digital design is well
# conditioned.
MAX_EDGE_FRACTION_OF_NYQUIST = 0.95


class StreamingFilter:
    """Causal IIR filter whose state carries over from one `process` call to the next.

    The state is initialised on the first sample as if the signal had been constant
    before it, so a DC offset does not cause a start-up transient. Any chunking of the
    input gives the same output as one call on the whole signal. Samples must be
    finite, because one NaN would spoil the state for good (see `hold_nonfinite`).
    """

    def __init__(self, sos: np.ndarray) -> None:
        sos = np.asarray(sos, dtype=np.float64)
        if sos.ndim != 2 or sos.shape[1] != 6:
            raise ValueError(f"sos must have shape (n_sections, 6), got {sos.shape}")
        self._sos = sos
        self._unit_state = signal.sosfilt_zi(sos)
        self._state: np.ndarray | None = None

    def process(self, samples: np.ndarray) -> np.ndarray:
        """Filter one chunk and return the output, which has the chunk's length."""
        samples = np.asarray(samples, dtype=np.float64)
        if samples.size == 0:
            return samples.copy()
        if self._state is None:
            self._state = self._unit_state * samples[0]
        output, self._state = signal.sosfilt(self._sos, samples, zi=self._state)
        return output

    def reset(self) -> None:
        """Forget the filter state, so the next sample starts a new signal."""
        self._state = None


def validate_sample_rate(sample_rate_hz: float) -> float:
    """Return the sampling rate as a float, raising ValueError outside 125-1000 Hz."""
    rate = float(sample_rate_hz)
    if not math.isfinite(rate) or not MIN_SAMPLE_RATE_HZ <= rate <= MAX_SAMPLE_RATE_HZ:
        raise ValueError(
            f"sample_rate_hz={sample_rate_hz} is outside the supported range "
            f"{MIN_SAMPLE_RATE_HZ:g}-{MAX_SAMPLE_RATE_HZ:g} Hz"
        )
    return rate


def _check_band_edge(name: str, frequency_hz: float, sample_rate_hz: float) -> None:
    limit_hz = MAX_EDGE_FRACTION_OF_NYQUIST * sample_rate_hz / 2.0
    if not math.isfinite(frequency_hz) or not 0.0 < frequency_hz < limit_hz:
        raise ValueError(
            f"{name}={frequency_hz} Hz must be above 0 and below {limit_hz:g} Hz "
            f"({MAX_EDGE_FRACTION_OF_NYQUIST:g} x Nyquist) at sample_rate_hz="
            f"{sample_rate_hz:g}"
        )


def _check_positive_rate(sample_rate_hz: float) -> None:
    if not math.isfinite(sample_rate_hz) or sample_rate_hz <= 0.0:
        raise ValueError(f"sample_rate_hz={sample_rate_hz} must be positive and finite")


def design_mains_notch(
    sample_rate_hz: float, mains_hz: float = 50.0, quality: float = MAINS_NOTCH_Q
) -> np.ndarray:
    """Design a second-order notch at the mains frequency, as second-order sections."""
    _check_positive_rate(sample_rate_hz)
    nyquist_hz = sample_rate_hz / 2.0
    # A notch is a single frequency, so unlike a band edge it may sit close to Nyquist:
    # 60 Hz mains at 125 Hz sampling is valid.
    if not math.isfinite(mains_hz) or not 0.0 < mains_hz < nyquist_hz:
        raise ValueError(
            f"mains_hz={mains_hz} Hz must be above 0 and below the Nyquist frequency "
            f"{nyquist_hz:g} Hz at sample_rate_hz={sample_rate_hz:g}"
        )
    if not quality > 0.0:
        raise ValueError(f"quality={quality} must be positive")
    b, a = signal.iirnotch(mains_hz, quality, fs=sample_rate_hz)
    return signal.tf2sos(b, a)


def design_baseline_highpass(
    sample_rate_hz: float,
    cutoff_hz: float = BASELINE_CUTOFF_HZ,
    order: int = BASELINE_ORDER,
) -> np.ndarray:
    """Design a Butterworth high-pass that removes baseline wander."""
    _check_positive_rate(sample_rate_hz)
    _check_band_edge("cutoff_hz", cutoff_hz, sample_rate_hz)
    return signal.butter(
        order, cutoff_hz, btype="highpass", fs=sample_rate_hz, output="sos"
    )


def design_qrs_bandpass(
    sample_rate_hz: float,
    low_hz: float = QRS_LOW_HZ,
    high_hz: float = QRS_HIGH_HZ,
    order: int = QRS_ORDER,
) -> np.ndarray:
    """Design the Butterworth band-pass that isolates QRS energy."""
    _check_positive_rate(sample_rate_hz)
    _check_band_edge("low_hz", low_hz, sample_rate_hz)
    _check_band_edge("high_hz", high_hz, sample_rate_hz)
    if low_hz >= high_hz:
        raise ValueError(f"low_hz={low_hz} must be below high_hz={high_hz}")
    return signal.butter(
        order, [low_hz, high_hz], btype="bandpass", fs=sample_rate_hz, output="sos"
    )


def hold_nonfinite(samples: np.ndarray, last_value: float) -> tuple[np.ndarray, float]:
    """Replace NaN and infinite samples by the last finite value before them.

    `last_value` is the last finite value of the previous chunk (use 0.0 at start).
    Returns the cleaned copy and the value to pass with the next chunk.
    """
    samples = np.asarray(samples, dtype=np.float64)
    finite = np.isfinite(samples)
    if finite.all():
        cleaned = samples.copy()
    else:
        # Index of the most recent finite sample at each position, -1 before the first.
        positions = np.where(finite, np.arange(samples.size), -1)
        latest = np.maximum.accumulate(positions)
        with_previous = np.concatenate(([last_value], samples))
        cleaned = with_previous[latest + 1]
    if cleaned.size:
        last_value = float(cleaned[-1])
    return cleaned, last_value
