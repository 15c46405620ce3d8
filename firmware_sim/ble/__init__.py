"""Simulated Bluetooth LE bedside sensors, built on bumble's in-process link.

``radio.VirtualRadio`` joins bumble controllers on one ``LocalLink``, so peripherals
and a central run in one event loop with no radio hardware. ``sensors`` builds the
Heart Rate, Pulse Oximeter, Blood Pressure and Health Thermometer peripherals, each
with a Battery service, and ``peripheral.SimulatedSensor`` notifies their values and
injects faults: a dropped link, silence and malformed values.
"""
