import numpy as np
import pytest

from edge_agent.dsp.beats import MIN_QRS_AMPLITUDE_MV, QrsDetector
from edge_agent.dsp.synthetic import beat_times_at_rate, synthetic_ecg

# Beats closer to the end than this are not yet confirmed when the signal stops.
DETECTION_LAG_S = 0.5
# Largest allowed distance between a detected and a true R peak.
LOCATION_TOLERANCE_S = 0.010


def _detect(samples: np.ndarray, sample_rate_hz: float, chunk: int | None = None):
    """Return the detected R peaks, except those too close to the end to be sure of."""
    detector = QrsDetector(sample_rate_hz, mains_hz=50.0)
    chunk = chunk or round(sample_rate_hz)
    beats: list[int] = []
    for begin in range(0, samples.size, chunk):
        beats.extend(detector.process(samples[begin : begin + chunk]))
    beats_array = np.array(beats, dtype=int)
    settled_until = samples.size - DETECTION_LAG_S * sample_rate_hz
    return beats_array[beats_array < settled_until], detector


def _expected(
    beat_times_s: np.ndarray, duration_s: float, sample_rate_hz: float
) -> np.ndarray:
    """Return the beat times that `_detect` should report, by the same cut-off."""
    settled_until = (
        round(duration_s * sample_rate_hz) - DETECTION_LAG_S * sample_rate_hz
    )
    return beat_times_s[np.round(beat_times_s * sample_rate_hz) < settled_until]


@pytest.mark.parametrize("sample_rate_hz", [125.0, 250.0, 360.0, 500.0, 1000.0])
def test_detector_finds_every_synthetic_beat(sample_rate_hz: float) -> None:
    duration_s = 30.0
    beat_times = beat_times_at_rate(75, duration_s)
    ecg = synthetic_ecg(beat_times, duration_s, sample_rate_hz)
    beats, _ = _detect(ecg, sample_rate_hz)
    expected = _expected(beat_times, duration_s, sample_rate_hz)
    assert beats.size == expected.size
    errors_s = np.abs(beats / sample_rate_hz - expected)
    assert errors_s.max() <= LOCATION_TOLERANCE_S


@pytest.mark.parametrize("rate_bpm", [30, 45, 120, 180, 240])
def test_detector_follows_rate_range(rate_bpm: float) -> None:
    sample_rate_hz, duration_s = 250.0, 30.0
    beat_times = beat_times_at_rate(rate_bpm, duration_s)
    beats, _ = _detect(synthetic_ecg(beat_times, duration_s, sample_rate_hz), 250.0)
    assert beats.size == _expected(beat_times, duration_s, sample_rate_hz).size


def test_detector_handles_inverted_lead() -> None:
    sample_rate_hz, duration_s = 360.0, 30.0
    beat_times = beat_times_at_rate(75, duration_s)
    ecg = -synthetic_ecg(beat_times, duration_s, sample_rate_hz)
    beats, _ = _detect(ecg, sample_rate_hz)
    expected = _expected(beat_times, duration_s, sample_rate_hz)
    assert beats.size == expected.size
    assert np.abs(beats / sample_rate_hz - expected).max() <= LOCATION_TOLERANCE_S


def test_detector_ignores_tall_t_waves() -> None:
    sample_rate_hz, duration_s = 250.0, 30.0
    beat_times = beat_times_at_rate(100, duration_s)
    ecg = synthetic_ecg(beat_times, duration_s, sample_rate_hz, t_wave_fraction=1.2)
    beats, _ = _detect(ecg, sample_rate_hz)
    assert beats.size == _expected(beat_times, duration_s, sample_rate_hz).size


def test_detector_handles_irregular_rhythm() -> None:
    rng = np.random.default_rng(3)
    beat_times = np.cumsum(rng.uniform(0.35, 1.3, 120))
    duration_s = float(beat_times[-1]) + 1.0
    beats, _ = _detect(synthetic_ecg(beat_times, duration_s, 360.0), 360.0)
    assert beats.size == beat_times.size


@pytest.mark.parametrize("sample_rate_hz", [125.0, 360.0, 1000.0])
def test_flat_line_gives_no_beats(sample_rate_hz: float) -> None:
    beats, detector = _detect(np.zeros(round(30 * sample_rate_hz)), sample_rate_hz)
    assert beats.size == 0
    assert detector.beat_horizon > detector.samples_seen - 0.2 * sample_rate_hz


@pytest.mark.parametrize("sample_rate_hz", [125.0, 250.0, 360.0, 1000.0])
def test_flat_line_with_noise_gives_no_beats(sample_rate_hz: float) -> None:
    rng = np.random.default_rng(11)
    noise = rng.normal(0.0, 0.05, round(60 * sample_rate_hz))
    beats, _ = _detect(noise + 1.2, sample_rate_hz)
    assert beats.size == 0


def test_constant_offset_gives_no_beats() -> None:
    beats, _ = _detect(np.full(250 * 20, 4.0), 250.0)
    assert beats.size == 0


@pytest.mark.parametrize("sample_rate_hz", [125.0, 360.0])
def test_amplitude_floor(sample_rate_hz: float) -> None:
    duration_s = 30.0
    beat_times = beat_times_at_rate(75, duration_s)
    expected = _expected(beat_times, duration_s, sample_rate_hz).size
    for amplitude_mv, beat_count in ((0.15, 0), (0.5, expected), (5.0, expected)):
        ecg = synthetic_ecg(beat_times, duration_s, sample_rate_hz, amplitude_mv)
        beats, _ = _detect(ecg, sample_rate_hz)
        assert beats.size == beat_count, f"{amplitude_mv} mV"
    assert 0.15 < MIN_QRS_AMPLITUDE_MV < 0.5


def test_nonfinite_samples_do_not_break_detection() -> None:
    sample_rate_hz, duration_s = 250.0, 30.0
    beat_times = beat_times_at_rate(75, duration_s)
    ecg = synthetic_ecg(beat_times, duration_s, sample_rate_hz)
    ecg[1000:1100] = np.nan
    ecg[3000] = np.inf
    ecg[4000:4010] = -np.inf
    beats, detector = _detect(ecg, sample_rate_hz)
    assert detector.nonfinite_count == 111
    expected = _expected(beat_times, duration_s, sample_rate_hz)
    # Only the beats overlapping the 0.4 s gap at 4 s may be lost.
    assert beats.size >= expected.size - 1
    assert np.all(beats >= 0)
    assert np.isfinite(detector._signal_peak)
    assert np.isfinite(detector._noise_peak)


def test_all_nonfinite_input_gives_no_beats() -> None:
    samples = np.full(250 * 10, np.nan)
    samples[::7] = np.inf
    beats, detector = _detect(samples, 250.0)
    assert beats.size == 0
    assert detector.nonfinite_count == samples.size


def test_huge_finite_samples_do_not_overflow() -> None:
    sample_rate_hz, duration_s = 250.0, 20.0
    beat_times = beat_times_at_rate(75, duration_s)
    ecg = synthetic_ecg(beat_times, duration_s, sample_rate_hz)
    ecg[2000] = 1e300
    beats, detector = _detect(ecg, sample_rate_hz)
    assert np.isfinite(detector._signal_peak)
    assert beats.size >= _expected(beat_times, duration_s, sample_rate_hz).size - 4


def test_detector_recovers_after_large_artefact() -> None:
    sample_rate_hz, duration_s = 250.0, 30.0
    beat_times = beat_times_at_rate(75, duration_s)
    ecg = synthetic_ecg(beat_times, duration_s, sample_rate_hz)
    ecg[3000:3020] += 50.0  # 50 mV step artefact at 12 s
    beats, _ = _detect(ecg, sample_rate_hz)
    after = beats[beats > 16.0 * sample_rate_hz] / sample_rate_hz
    expected = beat_times[(beat_times > 16.0) & (beat_times < duration_s - 0.5)]
    assert after.size == expected.size


def test_detector_output_independent_of_chunking() -> None:
    sample_rate_hz, duration_s = 250.0, 20.0
    rng = np.random.default_rng(5)
    beat_times = np.cumsum(rng.uniform(0.5, 1.1, 30))
    ecg = synthetic_ecg(beat_times, duration_s, sample_rate_hz)
    ecg += rng.normal(0.0, 0.02, ecg.size)
    reference, _ = _detect(ecg, sample_rate_hz, chunk=ecg.size)
    assert reference.size > 20
    for chunk in (1, 7, 250, 1000):
        beats, _ = _detect(ecg, sample_rate_hz, chunk=chunk)
        assert np.array_equal(beats, reference), f"chunk={chunk}"


def test_beat_horizon_trails_samples_seen() -> None:
    sample_rate_hz, duration_s = 250.0, 20.0
    ecg = synthetic_ecg(beat_times_at_rate(75, duration_s), duration_s, sample_rate_hz)
    detector = QrsDetector(sample_rate_hz)
    for begin in range(0, ecg.size, 25):
        detector.process(ecg[begin : begin + 25])
        if detector.samples_seen >= 3 * sample_rate_hz:
            lag_s = (detector.samples_seen - detector.beat_horizon) / sample_rate_hz
            assert 0.0 < lag_s <= 0.5
