"""Simulated bedside sensor board that streams recorded ECG over a pseudo-terminal."""

from firmware_sim.board import Board
from firmware_sim.config import BoardConfig
from firmware_sim.sources import SampleSource, WfdbReplay

__all__ = ["Board", "BoardConfig", "SampleSource", "WfdbReplay"]
