from edge_agent.supervision import RATE_WINDOW_S, TechnicalSupervisor


def supervisor(check_rate: bool = True) -> TechnicalSupervisor:
    return TechnicalSupervisor(sensor_silent_s=5, link_lost_s=15,
                               check_sample_rate=check_rate, started_at=0.0)


def kinds(updates: list) -> list[tuple[str, bool]]:
    return [(update.kind, update.present) for update in updates]


def test_sensor_silence_raised_and_cleared() -> None:
    watch = supervisor()
    watch.link_changed(True, 0.0)
    watch.samples_arrived(36, 1.0)
    assert kinds(watch.poll(5.0, 360)) == []
    assert kinds(watch.poll(6.5, 360)) == [("sensor_silent", True)]
    assert watch.poll(7.0, 360) == []
    watch.samples_arrived(36, 7.5)
    assert kinds(watch.poll(8.0, 360)) == [("sensor_silent", False)]


def test_link_lost_after_grace() -> None:
    watch = supervisor()
    watch.link_changed(True, 0.0)
    watch.link_changed(False, 20.0)
    watch.samples_arrived(36, 33.9)
    assert kinds(watch.poll(34.0, 360)) == []
    updates = watch.poll(35.5, 360)
    assert kinds(updates) == [("link_lost", True)]
    assert "16 s" in updates[0].evidence
    watch.link_changed(True, 36.0)
    assert kinds(watch.poll(36.1, 360)) == [("link_lost", False)]


def test_no_link_at_boot_counts() -> None:
    watch = supervisor()
    watch.samples_arrived(36, 14.0)
    assert kinds(watch.poll(15.0, 360)) == [("link_lost", True)]


def test_rate_measured_over_window() -> None:
    watch = supervisor()
    watch.link_changed(True, 0.0)
    now = 0.0
    # A burst of held-back frames first: the warm-up window absorbs it.
    watch.samples_arrived(36 * 50, now)
    while now <= 2 * RATE_WINDOW_S + 0.2:
        watch.samples_arrived(36, now)
        now += 0.1
        watch.poll(now, 360)
    rate = watch.take_measured_rate()
    assert rate is not None
    assert abs(rate - 360) < 5
    assert watch.take_measured_rate() is None


def test_rate_check_can_be_off() -> None:
    watch = supervisor(check_rate=False)
    for step in range(400):
        watch.samples_arrived(36, step * 0.1)
        watch.poll(step * 0.1, 360)
    assert watch.take_measured_rate() is None


def test_buffer_trouble_reported_once() -> None:
    watch = supervisor()
    watch.buffer_failed("disk I/O error")
    watch.buffer_failed("disk I/O error")
    assert kinds(watch.poll(0.1, None)) == [("buffer_trouble", True)]
    watch.buffer_recovered()
    assert ("buffer_trouble", False) in kinds(watch.poll(0.2, None))


def test_corrupt_buffer_notice_lasts() -> None:
    watch = supervisor()
    watch.buffer_corrupt_at_start("/var/lib/aura-edge/buffer.sqlite3.corrupt", 0.0)
    watch.buffer_recovered()
    watch.samples_arrived(36, 30.0)
    assert ("buffer_trouble", True) in kinds(watch.poll(30.0, 360))
    watch.samples_arrived(36, 61.0)
    assert ("buffer_trouble", False) in kinds(watch.poll(61.0, 360))


def test_buffer_full_clears_only_with_room() -> None:
    watch = supervisor()
    watch.buffer_full("discarded 10 oldest messages")
    watch.buffer_recovered()  # a successful write does not end a full buffer
    assert kinds(watch.poll(0.1, None)) == [("buffer_trouble", True)]
    watch.buffer_has_room()
    assert kinds(watch.poll(0.2, None)) == [("buffer_trouble", False)]


def test_pause_restarts_rate_measurement() -> None:
    watch = supervisor()
    watch.link_changed(True, 0.0)
    now = 0.0
    while now < 2 * RATE_WINDOW_S:
        if not 40.0 <= now < 44.0:  # the board is replugged for 4 s
            watch.samples_arrived(36, now)
        now += 0.1
        watch.poll(now, 360)
    assert watch.take_measured_rate() is None


def ble_supervisor() -> TechnicalSupervisor:
    return TechnicalSupervisor(sensor_silent_s=None, link_lost_s=15,
                               check_sample_rate=False, started_at=0.0,
                               sensor_disconnected_s=10.0)


def test_sensor_never_connected_raises_after_grace() -> None:
    watch = ble_supervisor()
    watch.link_changed(True, 0.0)
    watch.watch_sensor("A0:9E:1A:00:00:01", 0.0)
    assert kinds(watch.poll(9.5, None)) == []
    updates = watch.poll(10.5, None)
    assert kinds(updates) == [("sensor_disconnected", True)]
    assert "A0:9E:1A:00:00:01 for 10 s" in updates[0].evidence


def test_sensor_dropout_within_grace_is_quiet() -> None:
    watch = ble_supervisor()
    watch.link_changed(True, 0.0)
    watch.watch_sensor("strap", 0.0)
    watch.sensor_data_arrived("strap")
    watch.sensor_disconnected("strap", 20.0)
    assert kinds(watch.poll(25.0, None)) == []
    watch.sensor_data_arrived("strap")
    assert kinds(watch.poll(40.0, None)) == []


def test_sensor_alarm_clears_when_data_returns() -> None:
    watch = ble_supervisor()
    watch.link_changed(True, 0.0)
    for label in ("strap", "oximeter"):
        watch.watch_sensor(label, 0.0)
        watch.sensor_data_arrived(label)
    watch.sensor_disconnected("strap", 1.0)
    watch.sensor_disconnected("oximeter", 2.0)
    updates = watch.poll(12.5, None)
    assert kinds(updates) == [("sensor_disconnected", True)]
    assert "oximeter for 10 s, strap for 12 s" in updates[0].evidence
    watch.sensor_data_arrived("strap")
    assert kinds(watch.poll(13.0, None)) == []  # the oximeter is still away
    watch.sensor_data_arrived("oximeter")
    assert kinds(watch.poll(13.5, None)) == [("sensor_disconnected", False)]


def test_sensor_silence_off_without_board() -> None:
    watch = ble_supervisor()
    watch.link_changed(True, 0.0)
    assert kinds(watch.poll(60.0, None)) == []


def test_battery_low_raised_with_hysteresis() -> None:
    watch = ble_supervisor()
    watch.link_changed(True, 0.0)
    watch.sensor_battery("strap", 40)
    assert kinds(watch.poll(1.0, None)) == []
    watch.sensor_battery("strap", 15)
    updates = watch.poll(2.0, None)
    assert kinds(updates) == [("sensor_battery_low", True)]
    assert "strap at 15 %" in updates[0].evidence
    watch.sensor_battery("strap", 18)  # within the hysteresis band
    assert kinds(watch.poll(3.0, None)) == []
    watch.sensor_battery("strap", 21)
    assert kinds(watch.poll(4.0, None)) == [("sensor_battery_low", False)]
