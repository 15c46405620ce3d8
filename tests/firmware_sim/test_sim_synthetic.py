"""Synthetic ECG: ground truth against the signal, noise levels, source and CLI."""

import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import serial
from scipy.signal import find_peaks

from firmware_sim.config import BoardConfig
from firmware_sim.scenarios import (
    SCENARIOS,
    SyntheticSource,
    build_scenario,
)
from firmware_sim.stream import FrameStream
from firmware_sim.synthetic import (
    ASYSTOLE_PAUSE_S,
    PACER_SPIKE_MV,
    PACER_TO_R_S,
    BeatLabel,
    EpisodeKind,
    Noise,
    NoiseKind,
    Rhythm,
    Segment,
    synthesize,
)
from protocol.board import decode_payload
from protocol.framing import FrameParser, FrameType

REPO_ROOT = Path(__file__).resolve().parents[2]
FS = 250.0
SNR_TOLERANCE_DB = 0.5
STARTUP_TIMEOUT_S = 15.0
READ_TIMEOUT_S = 10.0


def r_peaks(signal_mv: np.ndarray, fs: float, height_mv: float = 0.5) -> np.ndarray:
    """Find R peaks independently of the generator: tall maxima 0.2 s apart."""
    peaks, _ = find_peaks(signal_mv, height=height_mv, distance=round(0.2 * fs))
    return peaks


def snr_db(clean: np.ndarray, noise: np.ndarray) -> float:
    return 10.0 * np.log10(np.var(clean) / np.mean(noise**2))


@pytest.mark.parametrize("fs", [125.0, 250.0, 360.0, 1000.0])
def test_normal_rhythm_beats_match_peaks(fs):
    ecg = synthesize([Segment(Rhythm.SINUS, 30.0, rate_bpm=75.0)], fs)
    beats = ecg.truth.beat_samples
    np.testing.assert_array_equal(r_peaks(ecg.clean_mv, fs), beats)
    assert len(beats) == 38  # first beat at 0.25 s, then every 0.8 s up to 29.85 s
    assert np.all(np.abs(np.diff(beats) - 0.8 * fs) <= 1)
    assert set(ecg.truth.beat_labels) == {BeatLabel.NORMAL}
    assert ecg.truth.episodes == ()


def test_qrs_amplitude_sets_r_height():
    for amplitude_mv in (0.15, 0.5, 3.0):
        ecg = synthesize([Segment(Rhythm.SINUS, 10.0, qrs_amplitude_mv=amplitude_mv)])
        heights = ecg.clean_mv[ecg.truth.beat_samples]
        assert np.all(np.abs(heights - amplitude_mv) < 0.05 * amplitude_mv + 0.01)


def test_tall_t_wave_reaches_amplitude():
    ecg = synthesize([Segment(Rhythm.SINUS, 10.0, t_amplitude_mv=1.2)])
    beat = int(ecg.truth.beat_samples[3])
    t_wave = ecg.clean_mv[beat + round(0.15 * FS) : beat + round(0.45 * FS)]
    assert t_wave.max() == pytest.approx(1.2, abs=0.05)


def test_rate_step_changes_spacing():
    ecg = build_scenario("rate-step")
    beats = ecg.truth.beat_samples
    before = beats[beats < 29 * FS]
    after = beats[beats > 31 * FS]
    assert np.all(np.abs(np.diff(before) - 1.0 * FS) <= 1)
    assert np.all(np.abs(np.diff(after) - 0.5 * FS) <= 1)
    assert ecg.truth.nominal_rate_bpm(round(10 * FS)) == 60.0
    assert ecg.truth.nominal_rate_bpm(round(40 * FS)) == 120.0


def test_irregular_rhythm_varies_around_rate():
    ecg = synthesize([Segment(Rhythm.IRREGULAR, 300.0, rate_bpm=90.0)], seed=3)
    rr_s = np.diff(ecg.truth.beat_samples) / FS
    variation = rr_s.std() / rr_s.mean()
    assert 0.15 < variation < 0.25
    assert 60.0 / np.median(rr_s) == pytest.approx(90.0, rel=0.03)
    np.testing.assert_array_equal(r_peaks(ecg.clean_mv, FS), ecg.truth.beat_samples)


def test_ventricular_beats_are_wide():
    ecg = synthesize([Segment(Rhythm.VENTRICULAR, 10.0, rate_bpm=60.0)])
    beat = int(ecg.truth.beat_samples[2])
    peak = ecg.clean_mv[beat]
    before = ecg.clean_mv[beat - round(0.2 * FS) : beat + 1]
    rise = np.flatnonzero(before < 0.1 * peak)[-1]
    # The R wave is symmetric, so twice its rise from 10 % height spans the QRS.
    width_s = 2 * (len(before) - 1 - rise) / FS
    assert width_s > 0.120
    assert set(ecg.truth.beat_labels) == {BeatLabel.VENTRICULAR}


def test_paced_beats_follow_spikes():
    ecg = build_scenario("paced-70")
    beats = ecg.truth.beat_samples
    spikes = ecg.clean_mv[beats - round(PACER_TO_R_S * FS)]
    assert np.all(spikes > 0.9 * PACER_SPIKE_MV)
    assert set(ecg.truth.beat_labels) == {BeatLabel.PACED}


def test_asystole_definition_four_seconds_after_last_beat():
    ecg = build_scenario("asystole")
    (episode,) = ecg.truth.episodes
    beats = ecg.truth.beat_samples
    last = beats[beats < 16 * FS][-1]
    following = beats[beats > last][0]
    assert episode.kind == EpisodeKind.ASYSTOLE
    assert episode.start_sample == last
    assert episode.definition_sample == last + round(ASYSTOLE_PAUSE_S * FS)
    assert episode.end_sample == following
    flat = ecg.clean_mv[last + round(0.6 * FS) : following - round(0.3 * FS)]
    assert np.abs(flat).max() < 0.01


@pytest.mark.parametrize(
    ("scenario", "kind", "needed", "limit_bpm", "below"),
    [
        ("brady-35", EpisodeKind.EXTREME_BRADYCARDIA, 5, 40.0, True),
        ("tachy-160", EpisodeKind.EXTREME_TACHYCARDIA, 17, 140.0, False),
    ],
)
def test_rate_episode_defined_at_nth_beat(scenario, kind, needed, limit_bpm, below):
    ecg = build_scenario(scenario)
    (episode,) = ecg.truth.episodes_of(kind)
    beats = ecg.truth.beat_samples
    rates = ecg.truth.beat_rates_bpm
    first = int(np.flatnonzero(beats == episode.start_sample)[0])
    run = rates[first : first + needed]
    assert np.all(run < limit_bpm) if below else np.all(run > limit_bpm)
    assert not (rates[first - 1] < limit_bpm if below else rates[first - 1] > limit_bpm)
    assert episode.definition_sample == beats[first + needed - 1]
    assert len(ecg.truth.episodes) == 1


def test_vt_defined_at_fifth_ventricular_beat():
    ecg = build_scenario("vt")
    (episode,) = ecg.truth.episodes_of(EpisodeKind.VENTRICULAR_TACHYCARDIA)
    beats = ecg.truth.beat_samples
    labels = np.array(ecg.truth.beat_labels)
    ventricular = beats[labels == BeatLabel.VENTRICULAR]
    assert episode.start_sample == ventricular[0]
    assert episode.definition_sample == ventricular[4]
    assert episode.end_sample == ventricular[-1]
    assert np.all(ecg.truth.beat_rates_bpm[labels == BeatLabel.VENTRICULAR] > 100.0)
    # 170 bpm for 8 s also meets the extreme tachycardia definition.
    assert ecg.truth.episodes_of(EpisodeKind.EXTREME_TACHYCARDIA)


def test_vf_segment_oscillates_without_beats():
    ecg = build_scenario("vf")
    (episode,) = ecg.truth.episodes
    first, end = round(15 * FS), round(25 * FS)
    assert episode.kind == EpisodeKind.VENTRICULAR_FIBRILLATION
    assert episode.start_sample == first
    assert episode.definition_sample == first + round(4 * FS)
    beats = ecg.truth.beat_samples
    assert not np.any((beats >= first) & (beats < end))
    assert ecg.truth.nominal_rate_bpm(first + 10) is None
    segment = ecg.clean_mv[first + round(0.5 * FS) : end]
    spectrum = np.abs(np.fft.rfft(segment - segment.mean())) ** 2
    frequencies = np.fft.rfftfreq(len(segment), 1 / FS)
    in_band = spectrum[(frequencies >= 3.5) & (frequencies <= 7.5)].sum()
    assert in_band / spectrum.sum() > 0.8


def test_clean_scenarios_have_no_episodes():
    for name in ("normal-75", "afib-110", "paced-70", "tall-t", "rate-step"):
        assert build_scenario(name).truth.episodes == (), name


@pytest.mark.parametrize("kind", list(NoiseKind))
@pytest.mark.parametrize("target_db", [24.0, 12.0, 6.0, 0.0])
def test_noise_snr_matches_request(kind, target_db):
    ecg = synthesize(
        [Segment(Rhythm.SINUS, 60.0)], noise=[Noise(kind, target_db)], seed=7
    )
    assert abs(snr_db(ecg.clean_mv, ecg.noise_mv) - target_db) <= SNR_TOLERANCE_DB
    np.testing.assert_allclose(ecg.signal_mv, ecg.clean_mv + ecg.noise_mv)


def test_noise_components_have_their_spectra():
    segments = [Segment(Rhythm.SINUS, 60.0)]
    mains = synthesize(segments, noise=[Noise(NoiseKind.MAINS, 10.0, 60.0)]).noise_mv
    frequencies = np.fft.rfftfreq(len(mains), 1 / FS)
    assert frequencies[np.argmax(np.abs(np.fft.rfft(mains)))] == pytest.approx(60.0)
    wander = synthesize(segments, noise=[Noise(NoiseKind.BASELINE_WANDER, 10.0)])
    spectrum = np.abs(np.fft.rfft(wander.noise_mv)) ** 2
    assert spectrum[frequencies <= 0.55].sum() / spectrum.sum() > 0.95
    motion = synthesize(segments, noise=[Noise(NoiseKind.ELECTRODE_MOTION, 10.0)])
    quiet = np.abs(motion.noise_mv - np.median(motion.noise_mv)) < 1e-9
    assert quiet.mean() > 0.5  # bursts, not a continuous disturbance


def test_same_seed_same_signal():
    first = build_scenario("noisy-normal", seed=11)
    again = build_scenario("noisy-normal", seed=11)
    other = build_scenario("noisy-normal", seed=12)
    np.testing.assert_array_equal(first.signal_mv, again.signal_mv)
    np.testing.assert_array_equal(first.truth.beat_samples, again.truth.beat_samples)
    assert not np.array_equal(first.noise_mv, other.noise_mv)
    irregular = [Segment(Rhythm.IRREGULAR, 30.0, rate_bpm=100.0)]
    np.testing.assert_array_equal(
        synthesize(irregular, seed=5).truth.beat_samples,
        synthesize(irregular, seed=5).truth.beat_samples,
    )


def test_counts_scale_and_clip():
    ecg = synthesize([Segment(Rhythm.SINUS, 5.0, qrs_amplitude_mv=2.0)])
    counts = ecg.counts(5.0)
    assert counts.dtype == np.int16
    np.testing.assert_array_equal(counts, np.round(ecg.signal_mv * 200.0))
    assert ecg.counts(0.01).max() == 2**15 - 1


def test_invalid_requests_rejected():
    with pytest.raises(ValueError, match="sample_rate_hz"):
        synthesize([Segment(Rhythm.SINUS, 5.0)], sample_rate_hz=100.0)
    with pytest.raises(ValueError, match="segments is empty"):
        synthesize([])
    with pytest.raises(ValueError, match="zero power"):
        synthesize([Segment(Rhythm.ASYSTOLE, 5.0)], noise=[Noise(NoiseKind.MUSCLE, 6)])
    with pytest.raises(ValueError, match="rate_bpm"):
        Segment(Rhythm.SINUS, 5.0, rate_bpm=0.0)
    with pytest.raises(ValueError, match="unknown synthetic scenario"):
        build_scenario("sinus-arrest")


def test_every_scenario_builds():
    for name in SCENARIOS:
        ecg = build_scenario(name, sample_rate_hz=125.0)
        assert len(ecg.truth.beat_samples) > 0, name


def test_source_loops_and_stops():
    ecg = synthesize([Segment(Rhythm.SINUS, 2.0)])
    looping = SyntheticSource(ecg)
    block = looping.read(700)
    np.testing.assert_array_equal(block[500:], ecg.counts()[:200])
    assert looping.position == 700
    single = SyntheticSource(ecg, loop=False)
    assert len(single.read(700)) == 500
    assert single.exhausted
    assert len(single.read(10)) == 0


def test_source_streams_through_frames():
    ecg = build_scenario("vt")
    source = SyntheticSource(ecg, loop=False)
    stream = FrameStream(source, BoardConfig(speed=0))
    parser = FrameParser()
    frames = []
    while (chunk := stream.next_chunk()) is not None:
        frames += parser.feed(chunk.data)
    hello = decode_payload(next(f for f in frames if f.type == FrameType.HELLO))
    samples = [
        value
        for frame in frames
        if frame.type == FrameType.ECG
        for value in decode_payload(frame).samples
    ]
    assert hello.sample_rate_hz == FS
    assert hello.lead == "II"
    np.testing.assert_array_equal(samples, ecg.counts())


def test_cli_streams_synthetic_scenario():
    expected = build_scenario("asystole", 125.0).counts()
    process = subprocess.Popen(
        [sys.executable, "-m", "firmware_sim", "--synthetic", "asystole"]
        + ["--speed", "0", "--sample-rate", "125"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        ready, _, _ = select.select([process.stdout], [], [], STARTUP_TIMEOUT_S)
        assert ready, "no device line on stdout"
        device = process.stdout.readline().removeprefix("device: ").strip()
        with serial.Serial(device, timeout=0.05) as port:
            payloads = read_ecg(port, len(expected))
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=READ_TIMEOUT_S)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr
    assert "asystole defined at" in stderr
    # pyserial empties the port's input queue when it opens it, so frames the board
    # wrote before that are gone; from the first frame read on, nothing may be missing.
    first = payloads[0].first_sample_index
    assert first < len(expected) // 2
    samples = [value for payload in payloads for value in payload.samples]
    np.testing.assert_array_equal(samples[: len(expected) - first], expected[first:])


def read_ecg(port: serial.Serial, sample_count: int) -> list:
    """Read ECG payloads until they cover ``sample_count`` samples."""
    parser = FrameParser()
    payloads = []
    deadline = time.monotonic() + READ_TIMEOUT_S
    while time.monotonic() < deadline:
        for frame in parser.feed(port.read(4096)):
            if frame.type == FrameType.ECG:
                payloads.append(decode_payload(frame))
        if payloads and payloads[-1].next_sample_index >= sample_count:
            return payloads
    raise TimeoutError(f"ECG did not reach sample {sample_count}")


def test_cli_synthetic_with_record_rejected():
    result = subprocess.run(
        [sys.executable, "-m", "firmware_sim", "--synthetic", "vt", "--lead", "II"],
        check=False,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=STARTUP_TIMEOUT_S,
    )
    assert result.returncode == 2
    assert "--synthetic cannot be combined" in result.stderr
