"""Named synthetic scenarios for demonstrations, and the board source that streams them.

The board streams these with ``aura-board --synthetic NAME``; the generator itself
lives in ``firmware_sim.synthetic``.
"""

from __future__ import annotations

from firmware_sim.sources import LoopingReplay
from firmware_sim.synthetic import (
    DEFAULT_MICROVOLTS_PER_COUNT,
    DEFAULT_SAMPLE_RATE_HZ,
    Noise,
    NoiseKind,
    Rhythm,
    Segment,
    SyntheticEcg,
    synthesize,
)

# Stretch of normal rhythm around each alarm episode in the named scenarios.
_CALM_S = 15.0
_NORMAL = Segment(Rhythm.SINUS, _CALM_S, rate_bpm=75.0)


def _around(episode: Segment) -> tuple[Segment, ...]:
    return (_NORMAL, episode, _NORMAL)


# Named scenarios for demonstrations: the board streams them with --synthetic.
SCENARIOS: dict[str, tuple[tuple[Segment, ...], tuple[Noise, ...]]] = {
    "normal-75": ((Segment(Rhythm.SINUS, 60.0, rate_bpm=75.0),), ()),
    "brady-35": (_around(Segment(Rhythm.SINUS, 30.0, rate_bpm=35.0)), ()),
    "tachy-160": (_around(Segment(Rhythm.SINUS, 30.0, rate_bpm=160.0)), ()),
    "asystole": (_around(Segment(Rhythm.ASYSTOLE, 8.0)), ()),
    "vt": (_around(Segment(Rhythm.VENTRICULAR, 8.0, rate_bpm=170.0)), ()),
    "vf": (_around(Segment(Rhythm.FIBRILLATION, 10.0)), ()),
    "afib-110": ((Segment(Rhythm.IRREGULAR, 60.0, rate_bpm=110.0),), ()),
    "paced-70": ((Segment(Rhythm.PACED, 60.0, rate_bpm=70.0),), ()),
    "tall-t": ((Segment(Rhythm.SINUS, 60.0, t_amplitude_mv=1.2),), ()),
    "rate-step": (
        (
            Segment(Rhythm.SINUS, 30.0, rate_bpm=60.0),
            Segment(Rhythm.SINUS, 30.0, rate_bpm=120.0),
        ),
        (),
    ),
    "noisy-normal": (
        (Segment(Rhythm.SINUS, 60.0, rate_bpm=75.0),),
        (
            Noise(NoiseKind.BASELINE_WANDER, 6.0),
            Noise(NoiseKind.MUSCLE, 18.0),
            Noise(NoiseKind.MAINS, 20.0),
            Noise(NoiseKind.ELECTRODE_MOTION, 12.0),
        ),
    ),
}


def build_scenario(
    name: str, sample_rate_hz: float = DEFAULT_SAMPLE_RATE_HZ, seed: int = 0
) -> SyntheticEcg:
    """Synthesize the named scenario; raise ValueError for an unknown name."""
    if name not in SCENARIOS:
        raise ValueError(
            f"unknown synthetic scenario {name!r}; choose one of {', '.join(SCENARIOS)}"
        )
    segments, noise = SCENARIOS[name]
    return synthesize(segments, sample_rate_hz, noise, seed)



class SyntheticSource(LoopingReplay):
    """Board sample source that streams a synthetic ECG as int16 counts.

    With `loop` the signal starts over at its end, so the ground truth repeats every
    `len(ecg.clean_mv)` samples. Without it, `read` returns an empty array from then
    on.
    """

    def __init__(
        self,
        ecg: SyntheticEcg,
        lead: str = "II",
        microvolts_per_count: float = DEFAULT_MICROVOLTS_PER_COUNT,
        loop: bool = True,
    ) -> None:
        self.ecg = ecg
        self.lead = lead
        self.sample_rate_hz = ecg.sample_rate_hz
        self.microvolts_per_count = microvolts_per_count
        self.loop = loop
        self.samples = ecg.counts(microvolts_per_count)
        self.position = 0
        self._offset = 0
