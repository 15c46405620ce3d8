"""Bedside edge agent: reads the monitor, analyses the ECG and raises alarms."""
