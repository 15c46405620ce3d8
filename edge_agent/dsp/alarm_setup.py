"""Construction of the alarm engine and the pulse confirmation from the settings."""

import logging
from dataclasses import replace

from edge_agent.alarms.catalog import DEFAULT_POLICIES
from edge_agent.alarms.confirmation import PulseConfirmation
from edge_agent.alarms.engine import AlarmEngine
from edge_agent.alarms.rules import physionet_2015_rules
from edge_agent.dsp.settings import AnalyzerSettings

logger = logging.getLogger(__name__)


def build_engine(sample_rate_hz: float, settings: AnalyzerSettings) -> AlarmEngine:
    """Build the engine with the PhysioNet 2015 rhythm rules and the set policies."""
    policies = dict(DEFAULT_POLICIES)
    if not settings.latching:
        policies = {k: replace(p, latching=False) for k, p in policies.items()}
    rules = physionet_2015_rules(
        sample_rate_hz,
        asystole_s=settings.asystole_s,
        bradycardia_bpm=settings.bradycardia_bpm,
        bradycardia_beats=settings.bradycardia_beats,
        tachycardia_bpm=settings.tachycardia_bpm,
        tachycardia_beats=settings.tachycardia_beats,
    )
    return AlarmEngine(rules, sample_rate_hz, policies, settings.limits)


def build_confirmation(
    sample_rate_hz: float, settings: AnalyzerSettings, pulse_name: str
) -> PulseConfirmation:
    """Build the pulse check for the asystole and bradycardia definitions set."""
    return PulseConfirmation(
        sample_rate_hz,
        pulse_name,
        asystole_s=settings.asystole_s,
        bradycardia_bpm=settings.bradycardia_bpm,
        bradycardia_beats=settings.bradycardia_beats,
    )
