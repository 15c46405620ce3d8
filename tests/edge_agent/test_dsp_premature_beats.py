"""QRS detection of wide premature beats that start a ventricular run."""

import numpy as np
import pytest

from edge_agent.dsp.beats import MIN_QRS_BAND_SLOPE_SHARE, QrsDetector
from edge_agent.dsp.qrs_signals import QrsFrontEnd, SignalHistory, qrs_band_slope_share
from edge_agent.dsp.synthetic import beat_times_at_rate, synthetic_ecg, ventricular_ecg

SINUS_BPM = 75.0
RUN_BPM = 170.0
SINUS_S = 10.0
RUN_S = 5.0
# The first ventricular beat follows the last sinus beat this closely, on the
# downslope of its T wave, where its slope is under half of the sinus beat's.
COUPLING_S = 0.356
CHUNK_S = 0.25
# A detection matches a true beat within this distance, as in ANSI/AAMI EC57.
MATCH_WINDOW_S = 0.150
# Beats closer to the end than this may not be reported yet.
DETECTION_LAG_S = 1.0


def _sinus_then_run(
    sample_rate_hz: float,
    coupling_s: float = COUPLING_S,
    t_wave_fraction: float = 0.3,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return the ECG (mV), all true beat samples and the ventricular beat samples."""
    sinus_s = beat_times_at_rate(SINUS_BPM, SINUS_S)
    run_s = sinus_s[-1] + coupling_s + np.arange(0.0, RUN_S, 60.0 / RUN_BPM)
    duration_s = float(run_s[-1]) + 2.0
    ecg = synthetic_ecg(
        sinus_s, duration_s, sample_rate_hz, t_wave_fraction=t_wave_fraction
    )
    ecg += ventricular_ecg(run_s, duration_s, sample_rate_hz, r_amplitude_mv=1.0)
    truth = np.round(np.concatenate((sinus_s, run_s)) * sample_rate_hz)
    return ecg, truth.astype(int), np.round(run_s * sample_rate_hz).astype(int)


def _detect(ecg: np.ndarray, sample_rate_hz: float) -> tuple[np.ndarray, list[bool]]:
    """Return the beats and, per chunk, whether its beats all lay past the horizon."""
    detector = QrsDetector(sample_rate_hz)
    chunk = round(CHUNK_S * sample_rate_hz)
    beats: list[int] = []
    after_horizon: list[bool] = []
    for begin in range(0, ecg.size, chunk):
        horizon = detector.beat_horizon
        found = detector.process(ecg[begin : begin + chunk])
        after_horizon.append(all(beat >= horizon for beat in found))
        beats.extend(found)
    return np.array(beats, dtype=int), after_horizon


def _unmatched(found: np.ndarray, expected: np.ndarray, window: float) -> int:
    """Count the samples of `expected` with no sample of `found` within `window`."""
    return sum(int(not np.any(np.abs(found - sample) <= window)) for sample in expected)


@pytest.mark.parametrize("sample_rate_hz", [250.0, 360.0, 500.0])
@pytest.mark.parametrize("coupling_s", [0.33, COUPLING_S])
def test_first_ventricular_beat_detected(
    sample_rate_hz: float, coupling_s: float
) -> None:
    ecg, truth, run = _sinus_then_run(sample_rate_hz, coupling_s)
    beats, _ = _detect(ecg, sample_rate_hz)
    window = MATCH_WINDOW_S * sample_rate_hz
    assert _unmatched(beats, run[:1], window) == 0, "first ventricular beat missed"
    settled = truth[truth < ecg.size - DETECTION_LAG_S * sample_rate_hz]
    assert _unmatched(beats, settled, window) == 0
    assert _unmatched(truth, beats, window) == 0


def test_first_ventricular_beat_is_in_order() -> None:
    ecg, _, run = _sinus_then_run(250.0)
    beats, after_horizon = _detect(ecg, 250.0)
    assert np.all(np.diff(beats) > 0)
    # The first beat is confirmed only by the next one, so the horizon must wait.
    assert all(after_horizon)
    assert np.min(np.abs(beats - run[0])) <= 0.020 * 250.0


@pytest.mark.parametrize("sample_rate_hz", [250.0, 500.0])
def test_tall_t_wave_before_run_not_counted(sample_rate_hz: float) -> None:
    ecg, truth, _ = _sinus_then_run(sample_rate_hz, t_wave_fraction=1.2)
    beats, _ = _detect(ecg, sample_rate_hz)
    window = MATCH_WINDOW_S * sample_rate_hz
    assert _unmatched(truth, beats, window) == 0


@pytest.mark.parametrize("rate_bpm", [50, 75, 100, 120])
@pytest.mark.parametrize("sample_rate_hz", [250.0, 360.0])
def test_tall_t_waves_not_counted(rate_bpm: float, sample_rate_hz: float) -> None:
    duration_s = 30.0
    beat_times = beat_times_at_rate(rate_bpm, duration_s)
    ecg = synthetic_ecg(beat_times, duration_s, sample_rate_hz, t_wave_fraction=1.2)
    beats, _ = _detect(ecg, sample_rate_hz)
    truth = np.round(beat_times * sample_rate_hz)
    window = MATCH_WINDOW_S * sample_rate_hz
    assert _unmatched(truth, beats, window) == 0
    settled = truth[truth < ecg.size - DETECTION_LAG_S * sample_rate_hz]
    assert _unmatched(beats, settled, window) == 0


def _share_at(ecg: np.ndarray, centre_s: float, sample_rate_hz: float) -> float:
    """Return the QRS-band slope share within 100 ms of `centre_s`."""
    front_end = QrsFrontEnd(sample_rate_hz, mains_hz=50.0)
    history = SignalHistory(ecg.size)
    history.append(front_end.process(ecg))
    centre = round(centre_s * sample_rate_hz) + front_end.delay
    half = round(0.100 * sample_rate_hz)
    return qrs_band_slope_share(history, centre - half, centre + half, sample_rate_hz)


@pytest.mark.parametrize("sample_rate_hz", [125.0, 250.0, 360.0, 1000.0])
def test_qrs_band_share_separates_noise(sample_rate_hz: float) -> None:
    duration_s = 4.0
    ecg = synthetic_ecg([1.0], duration_s, sample_rate_hz)
    ecg += ventricular_ecg([2.0], duration_s, sample_rate_hz)
    rng = np.random.default_rng(1)
    burst = slice(round(3.0 * sample_rate_hz), round(3.1 * sample_rate_hz))
    ecg[burst] += rng.normal(0.0, 0.3, ecg[burst].size)
    assert _share_at(ecg, 1.0, sample_rate_hz) >= MIN_QRS_BAND_SLOPE_SHARE, "narrow"
    assert _share_at(ecg, 2.0, sample_rate_hz) >= MIN_QRS_BAND_SLOPE_SHARE, "wide"
    assert _share_at(ecg, 3.05, sample_rate_hz) < MIN_QRS_BAND_SLOPE_SHARE, "noise"


def test_qrs_band_share_of_flat_line_is_zero() -> None:
    assert _share_at(np.zeros(1000), 2.0, 250.0) == 0.0
