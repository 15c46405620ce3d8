"""Technical conditions the agent detects outside the ECG: silence, link, rate, and
Bluetooth LE sensors without data.

Pure bookkeeping on a monotonic clock passed in by the caller. The agent reports
events (samples arrived, link up or down, buffer failed) and polls once a second; each
poll returns only the conditions whose state changed, with the evidence for a nurse
or a biomedical engineer.
"""

from __future__ import annotations

from dataclasses import dataclass

# A buffer found corrupt at start-up keeps its technical alarm this long, so staff see
# it even though the fresh buffer works at once.
CORRUPTION_NOTICE_S = 60.0
# A pause in arriving samples longer than this restarts the rate measurement.
RATE_PAUSE_S = 1.0
# A low battery alarm clears only once every sensor is this far above the alarm level,
# so a charge reading that wavers around the level does not make the alarm chatter.
BATTERY_HYSTERESIS_PERCENT = 5
# Arrival rates are compared over this window; shorter windows mistake serial
# delivery jitter for a wrong sampling rate.
RATE_WINDOW_S = 30.0


@dataclass(frozen=True)
class ConditionUpdate:
    kind: str
    present: bool
    evidence: str


class TechnicalSupervisor:
    """Decides when sensor silence, a lost link or a wrong sample rate is an alarm."""

    def __init__(
        self, sensor_silent_s: float | None, link_lost_s: float,
        check_sample_rate: bool, started_at: float, sensor_disconnected_s: float = 10.0,
        battery_low_percent: int = 15,
    ) -> None:
        # None turns the check off, for a bed with no sensor board.
        self._sensor_silent_s = sensor_silent_s
        self._sensor_disconnected_s = sensor_disconnected_s
        # Bluetooth sensors without data, by label, with the time their data stopped.
        self._sensors_lost_since: dict[str, float] = {}
        self._battery_low_percent = battery_low_percent
        self._battery_percent: dict[str, int] = {}
        self._link_lost_s = link_lost_s
        self._check_rate = check_sample_rate
        self._last_samples_at = started_at
        self._link_down_since: float | None = started_at
        self._window_start: float | None = None
        self._window_samples = 0
        self._warming_up = True
        self._present: dict[str, bool] = {}
        self._corruption_notice_until: float | None = None
        self._buffer_full = False
        self._updates: list[ConditionUpdate] = []
        self.measured_rate_hz: float | None = None

    def samples_arrived(self, count: int, now: float) -> None:
        if now - self._last_samples_at > RATE_PAUSE_S:
            # A pause (a replugged sensor, a restarted board) is no evidence about
            # the sampling rate, and the burst after it is queued data.
            self.restart_rate_window()
        self._last_samples_at = now
        if self._window_start is None:
            self._window_start = now  # counting starts after the first frame
            return
        self._window_samples += count

    def restart_rate_window(self) -> None:
        """Forget arrival counts, as after a gap or a change of sensor."""
        self._window_start = None
        self._window_samples = 0
        # Frames held back until the sensor's HELLO, or queued in the port while the
        # agent was away, arrive in a burst. The first window would read them as a
        # fast sample rate, so it is not judged.
        self._warming_up = True

    def link_changed(self, connected: bool, now: float) -> None:
        if connected:
            self._link_down_since = None
            self._set("link_lost", False, "connected to central again")
        elif self._link_down_since is None:
            self._link_down_since = now

    def watch_sensor(self, label: str, now: float) -> None:
        """Expect data from a Bluetooth sensor, which counts as lost until it sends."""
        self._sensors_lost_since.setdefault(label, now)

    def sensor_disconnected(self, label: str, now: float) -> None:
        self._sensors_lost_since.setdefault(label, now)

    def sensor_data_arrived(self, label: str) -> None:
        # Data, not the reconnection, ends the loss: a link can be up and still idle.
        self._sensors_lost_since.pop(label, None)

    def sensor_battery(self, label: str, percent: int) -> None:
        self._battery_percent[label] = percent

    def buffer_failed(self, error: str) -> None:
        self._set("buffer_trouble", True, f"the local buffer failed: {error}")

    def buffer_recovered(self) -> None:
        if self._corruption_notice_until is None and not self._buffer_full:
            self._set("buffer_trouble", False, "the local buffer works again")

    def buffer_full(self, evidence: str) -> None:
        self._buffer_full = True
        self._set("buffer_trouble", True, evidence)

    def buffer_has_room(self) -> None:
        if self._buffer_full:
            self._buffer_full = False
            self._set("buffer_trouble", False, "the local buffer has room again")

    def buffer_corrupt_at_start(self, moved_to: str, now: float) -> None:
        self._corruption_notice_until = now + CORRUPTION_NOTICE_S
        self._set("buffer_trouble", True,
                  f"the local buffer was corrupt at start-up and was moved to {moved_to};"
                  " messages it held were lost")

    def poll(self, now: float, nominal_rate_hz: float | None) -> list[ConditionUpdate]:
        """Return the condition changes since the last poll."""
        silent_s = now - self._last_samples_at
        if self._sensor_silent_s is not None and silent_s >= self._sensor_silent_s:
            self._set("sensor_silent", True, f"no samples from the sensor for {silent_s:.0f} s")
            self.restart_rate_window()
        else:
            self._set("sensor_silent", False, "samples arrive again")
        if self._link_down_since is not None:
            down_s = now - self._link_down_since
            if down_s >= self._link_lost_s:
                self._set("link_lost", True, f"no connection to central for {down_s:.0f} s")
        self._check_sensors(now)
        self._check_batteries()
        if self._corruption_notice_until is not None and now >= self._corruption_notice_until:
            self._corruption_notice_until = None
            self._set("buffer_trouble", False, "the fresh local buffer works")
        self._measure_rate(now, nominal_rate_hz)
        updates, self._updates = self._updates, []
        return updates

    def _check_sensors(self, now: float) -> None:
        overdue = [
            f"{label} for {now - since:.0f} s"
            for label, since in sorted(self._sensors_lost_since.items())
            if now - since >= self._sensor_disconnected_s
        ]
        if overdue:
            self._set("sensor_disconnected", True,
                      "no data from Bluetooth sensor " + ", ".join(overdue))
        else:
            self._set("sensor_disconnected", False,
                      "every Bluetooth sensor sends data again")

    def _check_batteries(self) -> None:
        level = self._battery_low_percent
        if self._present.get("sensor_battery_low", False):
            level += BATTERY_HYSTERESIS_PERCENT
        low = [
            f"{label} at {percent} %"
            for label, percent in sorted(self._battery_percent.items())
            if percent <= level
        ]
        if low:
            self._set("sensor_battery_low", True,
                      "low battery in Bluetooth sensor " + ", ".join(low))
        else:
            self._set("sensor_battery_low", False, "every Bluetooth sensor is charged")

    def _measure_rate(self, now: float, nominal_rate_hz: float | None) -> None:
        if not self._check_rate or self._window_start is None or nominal_rate_hz is None:
            return
        elapsed = now - self._window_start
        if elapsed < RATE_WINDOW_S:
            return
        if not self._warming_up:
            self.measured_rate_hz = self._window_samples / elapsed
        self._warming_up = False
        self._window_start = now
        self._window_samples = 0

    def take_measured_rate(self) -> float | None:
        """Return a rate measured since the last call, once."""
        rate, self.measured_rate_hz = self.measured_rate_hz, None
        return rate

    def _set(self, kind: str, present: bool, evidence: str) -> None:
        if self._present.get(kind, False) == present:
            return
        self._present[kind] = present
        self._updates.append(ConditionUpdate(kind, present, evidence))
