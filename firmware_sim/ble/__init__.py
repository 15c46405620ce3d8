"""Simulated Bluetooth LE bedside sensors, built on bumble's in-process link.

``radio.VirtualRadio`` joins bumble controllers on one ``LocalLink``, so peripherals
and a central run in one event loop with no radio hardware. ``sensors`` builds the
Heart Rate, Pulse Oximeter, Blood Pressure and Health Thermometer peripherals, each
with a Battery service, ``polar`` a Polar H10 that streams a WFDB record as ECG, and
``peripheral.SimulatedSensor`` notifies their values and injects faults: a dropped
link, a sensor out of range, silence and malformed values. ``cli`` serves them to
another process through an HCI transport (``python -m firmware_sim ble``).
"""
