import numpy as np
import pytest

from edge_agent.dsp.pulse import PulseDetector
from edge_agent.dsp.synthetic import beat_times_at_rate, pleth_wave

# The systolic peak of `pleth_wave` comes 0.30 s after the beat time.
SYSTOLIC_DELAY_S = 0.30


def _detect(wave: np.ndarray, sample_rate_hz: float, chunk_s: float) -> np.ndarray:
    detector = PulseDetector(sample_rate_hz)
    chunk = max(1, round(chunk_s * sample_rate_hz))
    pulses: list[int] = []
    for begin in range(0, wave.size, chunk):
        pulses.extend(detector.process(wave[begin : begin + chunk]))
    return np.asarray(pulses)


@pytest.mark.parametrize("sample_rate_hz", [125.0, 250.0, 1000.0])
@pytest.mark.parametrize("rate_bpm", [35.0, 75.0, 180.0])
def test_pulse_detector_finds_every_pulse(
    sample_rate_hz: float, rate_bpm: float
) -> None:
    beats = beat_times_at_rate(rate_bpm, 20.0)
    wave = pleth_wave(beats, 21.0, sample_rate_hz)
    pulses = _detect(wave, sample_rate_hz, 0.25)
    expected = (beats + SYSTOLIC_DELAY_S) * sample_rate_hz
    assert pulses.size == beats.size
    assert np.max(np.abs(pulses - expected)) <= 0.05 * sample_rate_hz


def test_pulse_detector_chunking_does_not_matter() -> None:
    wave = pleth_wave(beat_times_at_rate(80.0, 15.0), 16.0, 250.0)
    whole = _detect(wave, 250.0, 16.0)
    assert np.array_equal(_detect(wave, 250.0, 0.01), whole)
    assert np.array_equal(_detect(wave, 250.0, 0.7), whole)


@pytest.mark.parametrize("noise", [0.0, 0.01, 0.05])
def test_pulse_detector_flat_signal_has_no_pulse(noise: float) -> None:
    rng = np.random.default_rng(3)
    wave = 0.5 + noise * rng.standard_normal(round(30.0 * 250.0))
    assert _detect(wave, 250.0, 0.25).size == 0


def test_pulse_detector_no_pulse_after_pulses_stop() -> None:
    # The filter's recovery after the last pulse must not look like another pulse.
    beats = beat_times_at_rate(75.0, 10.0)
    wave = pleth_wave(beats, 25.0, 250.0, amplitude=2.0, baseline=3.0)
    pulses = _detect(wave, 250.0, 1.0)
    assert pulses.size == beats.size
    assert pulses[-1] / 250.0 < beats[-1] + 0.5


def test_pulse_detector_follows_noisy_pulses() -> None:
    rng = np.random.default_rng(5)
    beats = beat_times_at_rate(90.0, 30.0)
    wave = pleth_wave(beats, 31.0, 250.0) + 0.05 * rng.standard_normal(31 * 250)
    pulses = _detect(wave, 250.0, 0.5)
    assert abs(pulses.size - beats.size) <= 1


def test_pulse_detector_gap_holds_back_pulses() -> None:
    wave = pleth_wave(beat_times_at_rate(75.0, 20.0), 20.0, 250.0)
    wave[2500:2600] = np.nan  # 10.0 to 10.4 s
    detector = PulseDetector(250.0)
    pulses: list[int] = []
    for begin in range(0, wave.size, 250):
        pulses.extend(detector.process(wave[begin : begin + 250]))
    assert detector.usable_from == 2600 + 250
    assert not [p for p in pulses if 2500 <= p < 2850]
    assert [p for p in pulses if p >= 2850]


def test_pulse_detector_indices_start_at_offset() -> None:
    wave = pleth_wave(beat_times_at_rate(60.0, 5.0), 6.0, 250.0)
    detector = PulseDetector(250.0, start_sample=10_000)
    pulses = detector.process(wave)
    assert pulses[0] == pytest.approx(10_000 + 0.8 * 250.0, abs=5)
    assert detector.samples_seen == 10_000 + wave.size
    assert detector.horizon <= detector.samples_seen


def test_pulse_detector_mark_gap_advances() -> None:
    detector = PulseDetector(250.0)
    detector.mark_gap(500)
    assert detector.samples_seen == 500
    assert detector.usable_from == 500 + 250


def test_pulse_detector_rejects_low_rate() -> None:
    with pytest.raises(ValueError, match="sample_rate_hz"):
        PulseDetector(10.0)
