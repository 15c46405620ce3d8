"""NEWS2 scoring against chart 1 and chart 2 of the RCP 2017 report, by hand."""

from __future__ import annotations

import math

import pytest

from central.news2 import (
    PARAMETERS,
    Consciousness,
    Observations,
    RiskBand,
    risk_band,
    score_news2,
)

# (parameter, value, expected score): both edges of every band of chart 1.
NUMERIC_BOUNDARIES = [
    ("respiration_rate", 0, 3),
    ("respiration_rate", 8, 3),
    ("respiration_rate", 9, 1),
    ("respiration_rate", 11, 1),
    ("respiration_rate", 12, 0),
    ("respiration_rate", 20, 0),
    ("respiration_rate", 21, 2),
    ("respiration_rate", 24, 2),
    ("respiration_rate", 25, 3),
    ("respiration_rate", 60, 3),
    ("spo2", 80, 3),
    ("spo2", 91, 3),
    ("spo2", 92, 2),
    ("spo2", 93, 2),
    ("spo2", 94, 1),
    ("spo2", 95, 1),
    ("spo2", 96, 0),
    ("spo2", 100, 0),
    ("systolic_bp", 60, 3),
    ("systolic_bp", 90, 3),
    ("systolic_bp", 91, 2),
    ("systolic_bp", 100, 2),
    ("systolic_bp", 101, 1),
    ("systolic_bp", 110, 1),
    ("systolic_bp", 111, 0),
    ("systolic_bp", 219, 0),
    ("systolic_bp", 220, 3),
    ("pulse", 30, 3),
    ("pulse", 40, 3),
    ("pulse", 41, 1),
    ("pulse", 50, 1),
    ("pulse", 51, 0),
    ("pulse", 90, 0),
    ("pulse", 91, 1),
    ("pulse", 110, 1),
    ("pulse", 111, 2),
    ("pulse", 130, 2),
    ("pulse", 131, 3),
    ("temperature", 34.0, 3),
    ("temperature", 35.0, 3),
    ("temperature", 35.1, 1),
    ("temperature", 36.0, 1),
    ("temperature", 36.1, 0),
    ("temperature", 38.0, 0),
    ("temperature", 38.1, 1),
    ("temperature", 39.0, 1),
    ("temperature", 39.1, 2),
    ("temperature", 41.0, 2),
]

# (SpO2 %, on oxygen, expected score) on scale 2.
SCALE_2_BOUNDARIES = [
    (83, True, 3),
    (84, False, 2),
    (85, True, 2),
    (86, True, 1),
    (87, False, 1),
    (88, True, 0),
    (92, True, 0),
    (93, False, 0),
    (99, False, 0),
    (93, True, 1),
    (94, True, 1),
    (95, True, 2),
    (96, True, 2),
    (97, True, 3),
    (100, True, 3),
]

NORMAL = {
    "respiration_rate": 16,
    "spo2": 97,
    "on_oxygen": False,
    "systolic_bp": 120,
    "pulse": 70,
    "consciousness": Consciousness.ALERT,
    "temperature": 37.0,
}


def _only(parameter: str, value: float) -> int:
    score = score_news2(Observations(**{parameter: value}))
    (part,) = score.parts
    assert part.parameter == parameter
    return part.score


@pytest.mark.parametrize(("parameter", "value", "expected"), NUMERIC_BOUNDARIES)
def test_band_boundaries(parameter: str, value: float, expected: int) -> None:
    assert _only(parameter, value) == expected


@pytest.mark.parametrize(("spo2", "on_oxygen", "expected"), SCALE_2_BOUNDARIES)
def test_spo2_scale_2_boundaries(spo2: int, on_oxygen: bool, expected: int) -> None:
    score = score_news2(Observations(spo2=spo2, on_oxygen=on_oxygen, hypercapnic=True))
    parts = {part.parameter: part.score for part in score.parts}
    assert score.spo2_scale == 2
    assert parts["spo2"] == expected
    assert parts["air_or_oxygen"] == (2 if on_oxygen else 0)


def test_scale_2_needs_oxygen_above_92() -> None:
    score = score_news2(Observations(spo2=95, hypercapnic=True))
    assert "spo2" in score.missing
    assert "air_or_oxygen" in score.missing


def test_scale_2_low_values_without_oxygen() -> None:
    score = score_news2(Observations(spo2=85, hypercapnic=True))
    assert [(part.parameter, part.score) for part in score.parts] == [("spo2", 2)]


def test_air_and_oxygen_scores() -> None:
    assert score_news2(Observations(on_oxygen=False)).total == 0
    assert score_news2(Observations(on_oxygen=True)).total == 2


@pytest.mark.parametrize("level", list(Consciousness))
def test_consciousness_scores(level: Consciousness) -> None:
    expected = 0 if level is Consciousness.ALERT else 3
    assert score_news2(Observations(consciousness=level)).total == expected


def test_consciousness_accepts_letter() -> None:
    assert score_news2(Observations(consciousness="P")).total == 3


# (changes to NORMAL, expected total, expected risk), each summed by hand.
WORKED_EXAMPLES = [
    ({}, 0, RiskBand.LOW),
    # 1 + 1 + 1 + 1 = 4 with no single 3.
    (
        {"respiration_rate": 10, "spo2": 94, "systolic_bp": 108, "pulse": 45},
        4,
        RiskBand.LOW,
    ),
    # New confusion alone is a red score: 3, low-medium.
    ({"consciousness": Consciousness.NEW_CONFUSION}, 3, RiskBand.LOW_MEDIUM),
    # 3 (RR 8) + 1 (pulse 95) = 4 with a red score.
    ({"respiration_rate": 8, "pulse": 95}, 4, RiskBand.LOW_MEDIUM),
    # 2 + 1 + 1 + 1 = 5.
    (
        {"respiration_rate": 22, "spo2": 95, "systolic_bp": 105, "pulse": 95},
        5,
        RiskBand.MEDIUM,
    ),
    # 3 (RR 8) + 2 (SpO2 93) = 5: the total decides, not the red score.
    ({"respiration_rate": 8, "spo2": 93}, 5, RiskBand.MEDIUM),
    # 2 + 2 + 2 = 6.
    ({"respiration_rate": 23, "spo2": 92, "systolic_bp": 100}, 6, RiskBand.MEDIUM),
    # 2 + 2 + 2 + 1 (38.5 degC) = 7.
    (
        {"respiration_rate": 23, "spo2": 92, "systolic_bp": 100, "temperature": 38.5},
        7,
        RiskBand.HIGH,
    ),
    # 3 + 3 + 2 + 3 + 2 + 3 + 2 = 18.
    (
        {
            "respiration_rate": 26,
            "spo2": 90,
            "on_oxygen": True,
            "systolic_bp": 88,
            "pulse": 125,
            "consciousness": Consciousness.VOICE,
            "temperature": 39.5,
        },
        18,
        RiskBand.HIGH,
    ),
    # Scale 2: SpO2 90 % on oxygen scores 0, oxygen 2, pulse 115 scores 2.
    (
        {"spo2": 90, "on_oxygen": True, "pulse": 115, "hypercapnic": True},
        4,
        RiskBand.LOW,
    ),
]


@pytest.mark.parametrize(("changes", "total", "risk"), WORKED_EXAMPLES)
def test_worked_examples(changes: dict, total: int, risk: RiskBand) -> None:
    score = score_news2(Observations(**{**NORMAL, **changes}))
    assert score.total == total
    assert score.risk is risk
    assert score.complete
    assert [part.parameter for part in score.parts] == list(PARAMETERS)


@pytest.mark.parametrize(
    ("total", "red", "expected"),
    [
        (0, False, RiskBand.LOW),
        (4, False, RiskBand.LOW),
        (3, True, RiskBand.LOW_MEDIUM),
        (4, True, RiskBand.LOW_MEDIUM),
        (5, False, RiskBand.MEDIUM),
        (6, True, RiskBand.MEDIUM),
        (7, False, RiskBand.HIGH),
        (20, True, RiskBand.HIGH),
    ],
)
def test_risk_band_boundaries(total: int, red: bool, expected: RiskBand) -> None:
    assert risk_band(total, red) is expected


def test_missing_not_scored_zero() -> None:
    score = score_news2(Observations(pulse=72, temperature=34.0))
    assert score.total == 3
    assert not score.complete
    assert set(score.missing) == {
        "respiration_rate",
        "spo2",
        "air_or_oxygen",
        "systolic_bp",
        "consciousness",
    }
    assert {part.parameter for part in score.parts} == {"pulse", "temperature"}
    assert score.red_score_parameters == ["temperature"]


def test_nothing_measured() -> None:
    score = score_news2(Observations())
    assert score.total == 0
    assert score.parts == ()
    assert score.missing == PARAMETERS


@pytest.mark.parametrize(
    ("parameter", "value", "expected"),
    [
        ("respiration_rate", 20.4, 0),
        ("respiration_rate", 20.5, 2),
        ("pulse", 90.49, 0),
        ("pulse", 90.5, 1),
        ("temperature", 36.04, 1),
        ("temperature", 36.05, 0),
        ("temperature", 38.05, 1),
        ("spo2", 95.5, 0),
    ],
)
def test_rounds_to_chart_resolution(
    parameter: str, value: float, expected: int
) -> None:
    assert _only(parameter, value) == expected


@pytest.mark.parametrize("value", [-1.0, math.nan, math.inf])
def test_invalid_value_rejected(value: float) -> None:
    with pytest.raises(ValueError, match="pulse"):
        score_news2(Observations(pulse=value))


def test_unknown_consciousness_rejected() -> None:
    with pytest.raises(ValueError):
        score_news2(Observations(consciousness="X"))


def test_to_dict_shows_parts() -> None:
    body = score_news2(Observations(respiration_rate=22, pulse=72)).to_dict()
    assert body["total"] == 2
    assert body["risk"] == "low"
    assert body["complete"] is False
    assert body["parts"]["respiration_rate"] == {
        "value": 22,
        "band": "21-24",
        "score": 2,
    }
    assert "temperature" in body["missing"]
