"""Streaming ECG signal processing: filters, QRS detection, heart rate and quality."""

from edge_agent.dsp.pipeline import (
    AlarmChange,
    AnalyzerSettings,
    ChunkAnalysis,
    EcgAnalyzer,
)

__all__ = ["AlarmChange", "AnalyzerSettings", "ChunkAnalysis", "EcgAnalyzer"]
