import numpy as np
import pytest

from edge_agent.dsp.heart_rate import HeartRateMeter

SAMPLE_RATE_HZ = 250.0


def _feed(meter: HeartRateMeter, beat_times_s) -> None:
    for beat_s in beat_times_s:
        meter.add_beat(round(beat_s * SAMPLE_RATE_HZ))


def test_meter_returns_none_until_enough_beats() -> None:
    meter = HeartRateMeter(SAMPLE_RATE_HZ)
    readings = []
    for beat_s in np.arange(5) * 0.8:
        meter.add_beat(round(beat_s * SAMPLE_RATE_HZ))
        readings.append(meter.bpm)
    assert readings[:4] == [None, None, None, None]
    assert readings[4] == pytest.approx(75.0)


def test_meter_ignores_one_ectopic_beat() -> None:
    meter = HeartRateMeter(SAMPLE_RATE_HZ)
    beat_times = list(np.arange(12) * 0.8)
    beat_times.insert(8, 5.9)  # premature beat 0.5 s after its predecessor
    _feed(meter, sorted(beat_times))
    assert meter.bpm == pytest.approx(75.0, abs=1.0)


def test_meter_stable_on_irregular_rhythm() -> None:
    rng = np.random.default_rng(2)
    intervals = rng.uniform(0.5, 1.1, 200)  # atrial-fibrillation-like, mean 0.8 s
    meter = HeartRateMeter(SAMPLE_RATE_HZ)
    readings = []
    for beat_s in np.cumsum(intervals):
        meter.add_beat(round(beat_s * SAMPLE_RATE_HZ))
        if meter.bpm is not None:
            readings.append(meter.bpm)
    readings_array = np.array(readings[10:])
    beat_rates = 60.0 / intervals
    assert abs(np.median(readings_array) - 75.0) < 5.0
    # The readings spread far less than the beat-to-beat rates (55 to 120 bpm).
    assert np.std(readings_array) < 0.6 * np.std(beat_rates)


@pytest.mark.parametrize(("before_bpm", "after_bpm"), [(60, 150), (150, 40), (75, 30)])
def test_meter_settles_within_10_s(before_bpm: float, after_bpm: float) -> None:
    meter = HeartRateMeter(SAMPLE_RATE_HZ)
    step_s = 30.0
    before = np.arange(0.0, step_s, 60.0 / before_bpm)
    after = before[-1] + np.arange(1, 100) * 60.0 / after_bpm
    _feed(meter, before)
    assert meter.bpm == pytest.approx(before_bpm, rel=0.01)
    for beat_s in after:
        meter.add_beat(round(beat_s * SAMPLE_RATE_HZ))
        if beat_s - step_s >= 10.0:
            assert meter.bpm == pytest.approx(after_bpm, rel=0.02), f"{beat_s:.1f} s"


def test_meter_goes_stale_without_beats() -> None:
    meter = HeartRateMeter(SAMPLE_RATE_HZ, stale_after_s=4.0)
    _feed(meter, np.arange(10) * 0.8)
    last_beat = round(7.2 * SAMPLE_RATE_HZ)
    assert meter.bpm_at(last_beat + round(3.9 * SAMPLE_RATE_HZ)) == pytest.approx(75.0)
    assert meter.bpm_at(last_beat + round(4.1 * SAMPLE_RATE_HZ)) is None


def test_meter_ignores_out_of_order_beat() -> None:
    meter = HeartRateMeter(SAMPLE_RATE_HZ)
    _feed(meter, np.arange(6) * 1.0)
    meter.add_beat(round(2.0 * SAMPLE_RATE_HZ))
    assert meter.bpm == pytest.approx(60.0)


def test_meter_rejects_invalid_settings() -> None:
    with pytest.raises(ValueError, match="sample_rate_hz"):
        HeartRateMeter(0.0)
    with pytest.raises(ValueError, match="min_intervals"):
        HeartRateMeter(SAMPLE_RATE_HZ, window_beats=4, min_intervals=5)
