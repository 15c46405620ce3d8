"""Benchmarks of the ECG analysis; run ``python benchmarks/dsp_evaluation.py``."""
