"""Synthetic ECG with exact ground truth: rhythms, alarm episodes and added noise.

A signal is built from a list of `Segment`s (sinus, irregular, paced, ventricular,
fibrillation, asystole), each complex a sum of Gaussian waves, plus noise components
at a stated signal-to-noise ratio. `GroundTruth` lists every beat with its label, the
alarm episodes with the sample where their PhysioNet 2015 definition is met, and the
nominal heart rate over time. The same seed always gives the same samples.

The waveforms are caricatures with realistic timing, amplitudes and QRS widths. They
exercise detectors and alarms, but they are no physiological model.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np

from protocol.board import MAX_SAMPLE_RATE_HZ, MIN_SAMPLE_RATE_HZ

logger = logging.getLogger(__name__)

DEFAULT_SAMPLE_RATE_HZ = 250.0
# 5 uV per count (200 counts per mV) as in the MIT-BIH records: int16 spans +-163 mV.
DEFAULT_MICROVOLTS_PER_COUNT = 5.0
_INT16_MIN, _INT16_MAX = -(2**15), 2**15 - 1

# Alarm definitions of the PhysioNet/Computing in Cardiology Challenge 2015 (Clifford
# et al., Computing in Cardiology 42, 2015). The rate of a beat is 60 s over the RR
# interval that ends at it.
ASYSTOLE_PAUSE_S = 4.0
BRADYCARDIA_BPM = 40.0
BRADYCARDIA_BEATS = 5
TACHYCARDIA_BPM = 140.0
TACHYCARDIA_BEATS = 17
VT_BPM = 100.0
VT_BEATS = 5
VF_DURATION_S = 4.0

# First beat after the start or after a beat-free segment, so its P wave is complete.
LEAD_IN_S = 0.25
# QT grows with the RR interval. The T peak lies this far after R at 60 bpm, and the
# offset scales with the square root of RR as in Bazett's formula.
T_PEAK_AT_60_BPM_S = 0.30
P_AMPLITUDE_MV = 0.15
# Irregular rhythm: RR intervals vary with this coefficient of variation, as in
# atrial fibrillation, and never fall below the minimum.
IRREGULAR_RR_CV = 0.20
MIN_RR_S = 0.25
# Ventricular runs are not perfectly regular either.
VENTRICULAR_RR_CV = 0.03
# Fibrillatory waves wander between these frequencies (Hz) with this amplitude (mV).
FIBRILLATION_BAND_HZ = (4.0, 7.0)
VF_AMPLITUDE_MV = 0.5
F_WAVE_AMPLITUDE_MV = 0.05
# Random knots of the fibrillation frequency and amplitude come this often.
FIBRILLATION_KNOT_S = 0.3
# Pacemaker output on the skin: a short spike well before the paced R wave.
PACER_SPIKE_MV = 4.0
PACER_SPIKE_WIDTH_S = 0.001
PACER_TO_R_S = 0.07
# Waves are evaluated out to this many standard deviations from their centre.
_WAVE_SPAN_SIGMAS = 5.0

BASELINE_WANDER_BAND_HZ = (0.1, 0.5)
BASELINE_WANDER_TONES = 3
# One electrode-motion burst per this much signal, each lasting 0.5 to 2 s, with its
# content below 10 Hz.
MOTION_BURST_EVERY_S = 10.0
MOTION_BURST_S = (0.5, 2.0)
MOTION_CUTOFF_HZ = 10.0


class Rhythm(StrEnum):
    SINUS = "sinus"
    IRREGULAR = "irregular"  # atrial-fibrillation-like RR variability, f waves
    PACED = "paced"  # pacer spike before each wide QRS
    VENTRICULAR = "ventricular"  # wide bizarre QRS, no P wave
    FIBRILLATION = "fibrillation"  # chaotic 4 to 7 Hz oscillation, no QRS
    ASYSTOLE = "asystole"  # flat line


_BEATLESS = (Rhythm.FIBRILLATION, Rhythm.ASYSTOLE)


class BeatLabel(StrEnum):
    NORMAL = "normal"
    VENTRICULAR = "ventricular"
    PACED = "paced"


class EpisodeKind(StrEnum):
    """Alarm conditions of the PhysioNet 2015 challenge."""

    ASYSTOLE = "asystole"
    EXTREME_BRADYCARDIA = "extreme_bradycardia"
    EXTREME_TACHYCARDIA = "extreme_tachycardia"
    VENTRICULAR_TACHYCARDIA = "ventricular_tachycardia"
    VENTRICULAR_FIBRILLATION = "ventricular_fibrillation"


class NoiseKind(StrEnum):
    BASELINE_WANDER = "baseline_wander"  # sum of tones at 0.1 to 0.5 Hz
    MUSCLE = "muscle"  # white Gaussian noise over the whole band
    MAINS = "mains"  # sine at the mains frequency
    ELECTRODE_MOTION = "electrode_motion"  # low-frequency bursts


@dataclass(frozen=True)
class Segment:
    """A stretch of one rhythm.

    `rate_bpm` is the mean rate of beat-producing rhythms. `qrs_amplitude_mv` is the R
    wave height (ventricular beats are drawn larger), `t_amplitude_mv` the T wave
    height of normal beats, and `amplitude_mv` the fibrillation amplitude.
    """

    rhythm: Rhythm
    duration_s: float
    rate_bpm: float = 75.0
    qrs_amplitude_mv: float = 1.0
    t_amplitude_mv: float = 0.3
    amplitude_mv: float = VF_AMPLITUDE_MV

    def __post_init__(self) -> None:
        if not self.duration_s > 0:
            raise ValueError(
                f"invalid segment duration_s={self.duration_s}: must be > 0"
            )
        if self.rhythm not in _BEATLESS and not 10.0 <= self.rate_bpm <= 300.0:
            raise ValueError(
                f"invalid segment rate_bpm={self.rate_bpm}: must be 10 to 300 bpm"
            )


@dataclass(frozen=True)
class Noise:
    """One added noise component at `snr_db` relative to the clean ECG variance.

    NOTE: the MIT-BIH Noise Stress Test Database states SNR against QRS amplitude
    instead, so its dB figures are not comparable with these.
    """

    kind: NoiseKind
    snr_db: float
    mains_hz: float = 50.0


@dataclass(frozen=True)
class Episode:
    """An alarm condition: its first sample, definition sample and last sample."""

    kind: EpisodeKind
    start_sample: int
    # Sample at which the PhysioNet 2015 definition is first met.
    definition_sample: int
    end_sample: int


@dataclass(frozen=True)
class GroundTruth:
    """Contents of a synthetic signal, in sample indices at `sample_rate_hz`."""

    sample_rate_hz: float
    beat_samples: np.ndarray  # R-peak sample of each beat, increasing
    beat_labels: tuple[BeatLabel, ...]
    episodes: tuple[Episode, ...]
    # (first sample, end sample, nominal rate in bpm or None) of each segment.
    rate_segments: tuple[tuple[int, int, float | None], ...]

    @property
    def beat_rates_bpm(self) -> np.ndarray:
        """Rate of each beat from the RR interval ending at it; NaN for the first."""
        rates = np.full(len(self.beat_samples), np.nan)
        rates[1:] = 60.0 * self.sample_rate_hz / np.diff(self.beat_samples)
        return rates

    def nominal_rate_bpm(self, sample: int) -> float | None:
        """Return the generated mean rate at `sample`; None where there are no beats."""
        for first, end, rate in self.rate_segments:
            if first <= sample < end:
                return rate
        return None

    def episodes_of(self, kind: EpisodeKind) -> list[Episode]:
        """Return the episodes of one alarm kind, in time order."""
        return [episode for episode in self.episodes if episode.kind == kind]


@dataclass(frozen=True)
class SyntheticEcg:
    """A generated ECG lead: clean signal, added noise and the ground truth."""

    sample_rate_hz: float
    clean_mv: np.ndarray
    noise_mv: np.ndarray
    truth: GroundTruth
    noise_specs: tuple[Noise, ...] = field(default=())

    @property
    def signal_mv(self) -> np.ndarray:
        """Clean ECG plus noise in millivolts, as a monitor receives the lead."""
        return self.clean_mv + self.noise_mv

    @property
    def duration_s(self) -> float:
        """Length of the signal in seconds."""
        return len(self.clean_mv) / self.sample_rate_hz

    def counts(
        self, microvolts_per_count: float = DEFAULT_MICROVOLTS_PER_COUNT
    ) -> np.ndarray:
        """Return the noisy signal as int16 ADC counts, clipped to the int16 range."""
        scaled = np.round(self.signal_mv * 1000.0 / microvolts_per_count)
        clipped = int(np.count_nonzero((scaled < _INT16_MIN) | (scaled > _INT16_MAX)))
        if clipped:
            logger.warning("Clipped %d synthetic samples to the int16 range", clipped)
        return np.clip(scaled, _INT16_MIN, _INT16_MAX).astype(np.int16)


def synthesize(
    segments: Sequence[Segment],
    sample_rate_hz: float = DEFAULT_SAMPLE_RATE_HZ,
    noise: Sequence[Noise] = (),
    seed: int = 0,
) -> SyntheticEcg:
    """Build the ECG of `segments` in order, add `noise`, and derive the ground truth.

    Raises ValueError for an empty segment list, a sampling rate outside 125 to
    1000 Hz, or noise added to a signal with no power (only asystole).
    """
    if not segments:
        raise ValueError("segments is empty: give at least one Segment")
    if not MIN_SAMPLE_RATE_HZ <= sample_rate_hz <= MAX_SAMPLE_RATE_HZ:
        raise ValueError(
            f"invalid sample_rate_hz={sample_rate_hz}: must be "
            f"{MIN_SAMPLE_RATE_HZ:g} to {MAX_SAMPLE_RATE_HZ:g} Hz"
        )
    fs = float(sample_rate_hz)
    rng = np.random.default_rng(seed)
    bounds = _segment_bounds(segments, fs)
    total = bounds[-1][1]
    beats, labels = _place_beats(segments, bounds, fs, rng)
    clean = np.zeros(total)
    _draw_beats(clean, beats, labels, segments, bounds, fs, rng)
    _draw_oscillations(clean, segments, bounds, fs, rng)
    noise_mv = make_noise(clean, noise, fs, rng)
    truth = GroundTruth(
        sample_rate_hz=fs,
        beat_samples=beats,
        beat_labels=tuple(labels),
        episodes=tuple(find_episodes(beats, labels, segments, bounds, fs)),
        rate_segments=tuple(
            (first, end, None if seg.rhythm in _BEATLESS else seg.rate_bpm)
            for seg, (first, end) in zip(segments, bounds, strict=True)
        ),
    )
    return SyntheticEcg(fs, clean, noise_mv, truth, tuple(noise))


def _segment_bounds(segments: Sequence[Segment], fs: float) -> list[tuple[int, int]]:
    bounds = []
    start_s = 0.0
    for segment in segments:
        end_s = start_s + segment.duration_s
        bounds.append((round(start_s * fs), round(end_s * fs)))
        start_s = end_s
    return bounds


def _segment_at(bounds: Sequence[tuple[int, int]], sample: int) -> int | None:
    for index, (first, end) in enumerate(bounds):
        if first <= sample < end:
            return index
    return None


def _place_beats(
    segments: Sequence[Segment],
    bounds: Sequence[tuple[int, int]],
    fs: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, list[BeatLabel]]:
    """Place R peaks and label them; return beat samples and labels.

    An RR interval that crosses into the next segment is drawn again from that
    segment's rhythm, but ends no earlier than the segment start. So the first beat
    of a ventricular run is premature, and a rate step takes effect at its boundary.
    """
    beats: list[int] = []
    labels: list[BeatLabel] = []
    time_s = LEAD_IN_S
    last_s: float | None = None
    last_index = -1
    while (index := _segment_at(bounds, round(time_s * fs))) is not None:
        segment = segments[index]
        if segment.rhythm in _BEATLESS:
            time_s = bounds[index][1] / fs + LEAD_IN_S
            last_s = None
            continue
        if last_s is not None and index != last_index:
            time_s = max(bounds[index][0] / fs, last_s + _next_rr_s(segment, rng))
            last_index = index
            continue  # the new time may fall in a later, short segment
        beats.append(round(time_s * fs))
        labels.append(_label_of(segment.rhythm))
        last_s, last_index = time_s, index
        time_s += _next_rr_s(segment, rng)
    return np.asarray(beats, dtype=np.int64), labels


def _next_rr_s(segment: Segment, rng: np.random.Generator) -> float:
    mean_rr_s = 60.0 / segment.rate_bpm
    cv = {Rhythm.IRREGULAR: IRREGULAR_RR_CV, Rhythm.VENTRICULAR: VENTRICULAR_RR_CV}
    spread = cv.get(segment.rhythm, 0.0)
    if spread == 0.0:
        return mean_rr_s
    # Symmetric and clipped at 2 SD, so the median RR stays at the nominal rate.
    deviation = float(np.clip(rng.standard_normal(), -2.0, 2.0))
    return max(MIN_RR_S, mean_rr_s * (1.0 + spread * deviation))


def _label_of(rhythm: Rhythm) -> BeatLabel:
    if rhythm == Rhythm.VENTRICULAR:
        return BeatLabel.VENTRICULAR
    if rhythm == Rhythm.PACED:
        return BeatLabel.PACED
    return BeatLabel.NORMAL


def _draw_beats(
    signal: np.ndarray,
    beats: np.ndarray,
    labels: Sequence[BeatLabel],
    segments: Sequence[Segment],
    bounds: Sequence[tuple[int, int]],
    fs: float,
    rng: np.random.Generator,
) -> None:
    for number, (beat, label) in enumerate(zip(beats, labels, strict=True)):
        index = _segment_at(bounds, int(beat))
        assert index is not None  # every beat was placed inside a segment
        segment = segments[index]
        # QT follows the preceding RR interval, as in a real heart.
        rr_s = 60.0 / segment.rate_bpm
        if number > 0:
            rr_s = (beat - beats[number - 1]) / fs
        for offset_s, amplitude_mv, sigma_s in _waves(label, segment, rr_s, rng):
            _add_gaussian(signal, beat + offset_s * fs, amplitude_mv, sigma_s * fs)
        if label == BeatLabel.PACED:
            _add_pacer_spike(signal, int(beat) - round(PACER_TO_R_S * fs), fs)


def _waves(
    label: BeatLabel, segment: Segment, rr_s: float, rng: np.random.Generator
) -> list[tuple[float, float, float]]:
    """Return (offset from R in s, amplitude in mV, sigma in s) of each wave."""
    r_mv = segment.qrs_amplitude_mv
    qt_scale = float(np.sqrt(min(rr_s, 2.0)))
    t_offset_s = T_PEAK_AT_60_BPM_S * qt_scale
    if label == BeatLabel.NORMAL:
        waves = [
            (-0.030, -0.10 * r_mv, 0.010),  # Q
            (0.000, r_mv, 0.012),  # R: QRS about 90 ms wide
            (0.030, -0.25 * r_mv, 0.010),  # S
            (t_offset_s, segment.t_amplitude_mv, 0.050 * qt_scale),  # T
        ]
        if segment.rhythm == Rhythm.SINUS:
            waves.append((-0.160, P_AMPLITUDE_MV, 0.025))
        return waves
    # Ventricular and paced beats: wide (well over 120 ms) QRS with a late deep S and
    # a T wave of the opposite polarity. Ectopic beats vary from one to the next.
    jitter = 1.0 + 0.1 * rng.standard_normal(3)
    return [
        (0.000, 1.2 * r_mv * jitter[0], 0.030),  # R
        (0.090, -0.5 * r_mv * jitter[1], 0.030),  # S
        (t_offset_s + 0.04, -0.35 * r_mv * jitter[2], 0.070),  # discordant T
    ]


def _add_gaussian(
    signal: np.ndarray, centre: float, amplitude: float, sigma: float
) -> None:
    """Add a Gaussian wave; `centre` and `sigma` are in samples."""
    half_span = _WAVE_SPAN_SIGMAS * sigma
    first = max(0, int(np.floor(centre - half_span)))
    last = min(len(signal), int(np.ceil(centre + half_span)) + 1)
    if first >= last:
        return
    t = (np.arange(first, last) - centre) / sigma
    signal[first:last] += amplitude * np.exp(-0.5 * t * t)


def _add_pacer_spike(signal: np.ndarray, first: int, fs: float) -> None:
    width = max(1, round(PACER_SPIKE_WIDTH_S * fs))
    if 0 <= first < len(signal):
        signal[first : first + width] += PACER_SPIKE_MV


def _draw_oscillations(
    signal: np.ndarray,
    segments: Sequence[Segment],
    bounds: Sequence[tuple[int, int]],
    fs: float,
    rng: np.random.Generator,
) -> None:
    """Draw ventricular fibrillation, and f waves under irregular rhythms."""
    for segment, (first, end) in zip(segments, bounds, strict=True):
        if segment.rhythm == Rhythm.FIBRILLATION:
            amplitude_mv = segment.amplitude_mv
        elif segment.rhythm == Rhythm.IRREGULAR:
            amplitude_mv = F_WAVE_AMPLITUDE_MV
        else:
            continue
        signal[first:end] += fibrillation_wave(end - first, fs, amplitude_mv, rng)


def fibrillation_wave(
    count: int, fs: float, amplitude_mv: float, rng: np.random.Generator
) -> np.ndarray:
    """Return a chaotic oscillation whose frequency wanders in FIBRILLATION_BAND_HZ.

    Frequency and amplitude follow random knots every FIBRILLATION_KNOT_S, so the
    wave has no fixed period. Its peak amplitude is about `amplitude_mv`.
    """
    low_hz, high_hz = FIBRILLATION_BAND_HZ
    knot_count = int(count / (FIBRILLATION_KNOT_S * fs)) + 2
    knots = np.arange(knot_count) * FIBRILLATION_KNOT_S * fs
    samples = np.arange(count)
    frequency_hz = np.interp(samples, knots, rng.uniform(low_hz, high_hz, knot_count))
    envelope = np.interp(samples, knots, rng.uniform(0.5, 1.0, knot_count))
    phase = 2.0 * np.pi * np.cumsum(frequency_hz) / fs + rng.uniform(0, 2 * np.pi)
    return amplitude_mv * envelope * np.sin(phase)


def make_noise(
    clean: np.ndarray, specs: Sequence[Noise], fs: float, rng: np.random.Generator
) -> np.ndarray:
    """Return the sum of the noise components, each scaled to its own SNR.

    The SNR of a component is 10 log10 of the clean signal's variance over the noise
    power, both over the whole signal. So bursts of electrode motion are far louder
    than the stated SNR while they last. `clean` may be any lead, such as a record.
    """
    total = np.zeros(len(clean))
    if not specs:
        return total
    signal_power = float(np.var(clean))
    if signal_power == 0.0:
        raise ValueError("cannot add noise at an SNR to a signal with zero power")
    for spec in specs:
        shape = _noise_shape(spec, len(clean), fs, rng)
        shape -= shape.mean()
        target_power = signal_power / 10.0 ** (spec.snr_db / 10.0)
        total += shape * np.sqrt(target_power / np.mean(shape**2))
    return total


def _noise_shape(
    spec: Noise, count: int, fs: float, rng: np.random.Generator
) -> np.ndarray:
    t = np.arange(count) / fs
    if spec.kind == NoiseKind.MUSCLE:
        return rng.standard_normal(count)
    if spec.kind == NoiseKind.MAINS:
        if not 0 < spec.mains_hz < fs / 2:
            raise ValueError(
                f"invalid mains_hz={spec.mains_hz}: must be below half of {fs:g} Hz"
            )
        return np.sin(2 * np.pi * spec.mains_hz * t + rng.uniform(0, 2 * np.pi))
    if spec.kind == NoiseKind.BASELINE_WANDER:
        low_hz, high_hz = BASELINE_WANDER_BAND_HZ
        wave = np.zeros(count)
        for _ in range(BASELINE_WANDER_TONES):
            tone_hz = rng.uniform(low_hz, high_hz)
            wave += rng.uniform(0.5, 1.0) * np.sin(
                2 * np.pi * tone_hz * t + rng.uniform(0, 2 * np.pi)
            )
        return wave
    return _motion_bursts(count, fs, rng)


def _motion_bursts(count: int, fs: float, rng: np.random.Generator) -> np.ndarray:
    """Electrode motion: Hann-windowed bursts of low-pass noise at random times."""
    wave = np.zeros(count)
    burst_count = max(1, round(count / fs / MOTION_BURST_EVERY_S))
    smoothing = max(1, round(fs / MOTION_CUTOFF_HZ))
    kernel = np.ones(smoothing) / smoothing
    for _ in range(burst_count):
        length = min(count, round(rng.uniform(*MOTION_BURST_S) * fs))
        first = int(rng.integers(0, count - length + 1))
        # A random walk smoothed to below MOTION_CUTOFF_HZ looks like a cable tug.
        walk = np.cumsum(rng.standard_normal(length))
        walk = np.convolve(walk - walk.mean(), kernel, mode="same")
        wave[first : first + length] += walk * np.hanning(length)
    return wave


def find_episodes(
    beats: np.ndarray,
    labels: Sequence[BeatLabel],
    segments: Sequence[Segment],
    bounds: Sequence[tuple[int, int]],
    fs: float,
) -> list[Episode]:
    """Find every alarm episode of the PhysioNet 2015 definitions in the beat list."""
    total = bounds[-1][1]
    fibrillation = [
        bound
        for segment, bound in zip(segments, bounds, strict=True)
        if segment.rhythm == Rhythm.FIBRILLATION
    ]
    episodes = _asystole_episodes(beats, fibrillation, total, fs)
    rates = np.full(len(beats), np.nan)
    rates[1:] = 60.0 * fs / np.diff(beats)
    ventricular = np.array([label == BeatLabel.VENTRICULAR for label in labels])
    runs = (
        (EpisodeKind.EXTREME_BRADYCARDIA, rates < BRADYCARDIA_BPM, BRADYCARDIA_BEATS),
        (EpisodeKind.EXTREME_TACHYCARDIA, rates > TACHYCARDIA_BPM, TACHYCARDIA_BEATS),
        (EpisodeKind.VENTRICULAR_TACHYCARDIA, ventricular & (rates > VT_BPM), VT_BEATS),
    )
    for kind, beyond, needed in runs:
        episodes += _run_episodes(kind, beats, beyond, needed)
    pause = round(VF_DURATION_S * fs)
    for first, end in fibrillation:
        if end - first >= pause:
            episodes.append(
                Episode(EpisodeKind.VENTRICULAR_FIBRILLATION, first, first + pause, end)
            )
    return sorted(episodes, key=lambda episode: episode.definition_sample)


def _asystole_episodes(
    beats: np.ndarray, fibrillation: Sequence[tuple[int, int]], total: int, fs: float
) -> list[Episode]:
    """Find pauses of ASYSTOLE_PAUSE_S without a beat that no fibrillation explains.

    Monitoring starts at sample 0, so a pause before the first beat counts too.
    """
    pause = round(ASYSTOLE_PAUSE_S * fs)
    edges = np.concatenate(([0], beats, [total]))
    episodes = []
    for before, after in itertools.pairwise(edges):
        if after - before < pause:
            continue
        if any(first < after and before < end for first, end in fibrillation):
            continue
        episodes.append(
            Episode(EpisodeKind.ASYSTOLE, int(before), int(before) + pause, int(after))
        )
    return episodes


def _run_episodes(
    kind: EpisodeKind, beats: np.ndarray, beyond: np.ndarray, needed: int
) -> list[Episode]:
    """Find runs of at least `needed` consecutive beats flagged in `beyond`."""
    episodes = []
    run_start: int | None = None
    for index in range(len(beats) + 1):
        if index < len(beats) and beyond[index]:
            run_start = index if run_start is None else run_start
            continue
        if run_start is not None and index - run_start >= needed:
            episodes.append(
                Episode(
                    kind,
                    int(beats[run_start]),
                    int(beats[run_start + needed - 1]),
                    int(beats[index - 1]),
                )
            )
        run_start = None
    return episodes
