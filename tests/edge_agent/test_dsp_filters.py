import numpy as np
import pytest

from edge_agent.dsp.filters import (
    StreamingFilter,
    design_baseline_highpass,
    design_mains_notch,
    design_qrs_bandpass,
    hold_nonfinite,
    validate_sample_rate,
)

CHUNK_SIZES = (1, 7, 250, 1000)


def _test_signal(sample_rate_hz: float, seconds: float = 6.0) -> np.ndarray:
    rng = np.random.default_rng(7)
    t = np.arange(round(seconds * sample_rate_hz)) / sample_rate_hz
    wander = 0.8 * np.sin(2 * np.pi * 0.2 * t) + 1.5  # baseline drift and DC offset
    mains = 0.2 * np.sin(2 * np.pi * 50 * t)
    return wander + mains + rng.normal(0.0, 0.3, t.size)


def _run_in_chunks(sos: np.ndarray, samples: np.ndarray, chunk: int) -> np.ndarray:
    streaming = StreamingFilter(sos)
    pieces = [
        streaming.process(samples[begin : begin + chunk])
        for begin in range(0, samples.size, chunk)
    ]
    return np.concatenate(pieces)


DESIGNS = {
    "notch_50": lambda fs: design_mains_notch(fs, 50.0),
    "notch_60": lambda fs: design_mains_notch(fs, 60.0),
    "baseline": design_baseline_highpass,
    "qrs_band": design_qrs_bandpass,
}


@pytest.mark.parametrize("sample_rate_hz", [125.0, 360.0, 1000.0])
@pytest.mark.parametrize("design", sorted(DESIGNS))
def test_streaming_filter_chunking_invariant(
    design: str, sample_rate_hz: float
) -> None:
    sos = DESIGNS[design](sample_rate_hz)
    samples = _test_signal(sample_rate_hz)
    whole = StreamingFilter(sos).process(samples)
    assert np.all(np.isfinite(whole))
    for chunk in CHUNK_SIZES:
        chunked = _run_in_chunks(sos, samples, chunk)
        assert chunked.shape == whole.shape
        assert np.allclose(chunked, whole, rtol=1e-12, atol=1e-12), f"chunk={chunk}"


def test_streaming_filter_starts_without_transient() -> None:
    sos = design_baseline_highpass(250.0)
    output = StreamingFilter(sos).process(np.full(500, 3.0))
    # A constant input is treated as already settled, so a high-pass outputs zero.
    assert np.max(np.abs(output)) < 1e-9


def test_streaming_filter_reset_restarts() -> None:
    sos = design_qrs_bandpass(250.0)
    samples = _test_signal(250.0, seconds=2.0)
    streaming = StreamingFilter(sos)
    first = streaming.process(samples)
    streaming.reset()
    assert np.allclose(streaming.process(samples), first)


def test_streaming_filter_empty_chunk() -> None:
    streaming = StreamingFilter(design_qrs_bandpass(250.0))
    assert streaming.process(np.zeros(0)).size == 0


def test_notch_attenuates_mains() -> None:
    sample_rate_hz = 500.0
    t = np.arange(5000) / sample_rate_hz
    for mains_hz in (50.0, 60.0):
        tone = np.sin(2 * np.pi * mains_hz * t)
        output = StreamingFilter(design_mains_notch(sample_rate_hz, mains_hz)).process(
            tone
        )
        assert np.max(np.abs(output[-1000:])) < 0.05


def test_notch_60_hz_at_100_hz_rejected() -> None:
    with pytest.raises(ValueError, match=r"mains_hz=60.*50 Hz"):
        design_mains_notch(100.0, 60.0)


def test_notch_60_hz_at_125_hz_allowed() -> None:
    sos = design_mains_notch(125.0, 60.0)
    assert np.all(np.isfinite(sos))


def test_band_edge_above_nyquist_rejected() -> None:
    with pytest.raises(ValueError, match=r"high_hz=80.*59\.375 Hz"):
        design_qrs_bandpass(125.0, low_hz=5.0, high_hz=80.0)


def test_inverted_band_rejected() -> None:
    with pytest.raises(ValueError, match="low_hz"):
        design_qrs_bandpass(250.0, low_hz=20.0, high_hz=10.0)


def test_nonpositive_cutoff_rejected() -> None:
    with pytest.raises(ValueError, match="cutoff_hz"):
        design_baseline_highpass(250.0, cutoff_hz=0.0)


@pytest.mark.parametrize("rate", [100.0, 1200.0, float("nan")])
def test_unsupported_sample_rate_rejected(rate: float) -> None:
    with pytest.raises(ValueError, match="sample_rate_hz.*125-1000 Hz"):
        validate_sample_rate(rate)


def test_supported_sample_rate_accepted() -> None:
    assert validate_sample_rate(125) == 125.0
    assert validate_sample_rate(1000) == 1000.0


def test_hold_nonfinite_holds_last_value() -> None:
    samples = np.array([np.nan, 1.0, np.nan, np.inf, 2.0, -np.inf])
    cleaned, last = hold_nonfinite(samples, last_value=0.5)
    assert cleaned.tolist() == [0.5, 1.0, 1.0, 1.0, 2.0, 2.0]
    assert last == 2.0


def test_hold_nonfinite_leaves_input_untouched() -> None:
    samples = np.array([1.0, np.nan])
    hold_nonfinite(samples, last_value=0.0)
    assert np.isnan(samples[1])
