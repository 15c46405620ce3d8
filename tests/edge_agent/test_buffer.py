from datetime import datetime, timedelta, timezone
from pathlib import Path

from edge_agent.buffer import MessageBuffer, Priority
from protocol.messages import (
    DataGap,
    DeviceHello,
    EcgWaveform,
    Emergency,
    decode_device_message,
)

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


def hello(seq: int) -> DeviceHello:
    return DeviceHello(device_id="dev-1", seq=seq, sent_at=NOW, model="m", firmware="f")


async def test_sequence_survives_reopen(tmp_path: Path) -> None:
    buffer = MessageBuffer(tmp_path / "buffer.sqlite3")
    await buffer.open()
    first = await buffer.append(hello, Priority.NUMERICS)
    second = await buffer.append(hello, Priority.NUMERICS)
    await buffer.close()

    reopened = MessageBuffer(tmp_path / "buffer.sqlite3")
    await reopened.open()
    third = await reopened.append(hello, Priority.NUMERICS)
    assert (first.seq, second.seq, third.seq) == (0, 1, 2)
    assert await reopened.pending_count() == 3
    await reopened.close()


async def test_acknowledge_removes_only_acked(tmp_path: Path) -> None:
    buffer = MessageBuffer(tmp_path / "buffer.sqlite3")
    await buffer.open()
    for _ in range(4):
        await buffer.append(hello, Priority.NUMERICS)
    assert await buffer.acknowledge([1, 3, 99]) == 2
    remaining = [message.seq for message in await buffer.next_batch(10)]
    assert remaining == [0, 2]
    await buffer.close()


async def test_alarms_come_first(tmp_path: Path) -> None:
    buffer = MessageBuffer(tmp_path / "buffer.sqlite3")
    await buffer.open()
    await buffer.append(hello, Priority.WAVEFORM)
    await buffer.append(hello, Priority.NUMERICS)
    await buffer.append(hello, Priority.ALARM)
    order = [message.seq for message in await buffer.next_batch(10)]
    assert order == [2, 1, 0]
    await buffer.close()


async def test_batch_excludes_in_flight(tmp_path: Path) -> None:
    buffer = MessageBuffer(tmp_path / "buffer.sqlite3")
    await buffer.open()
    for _ in range(5):
        await buffer.append(hello, Priority.NUMERICS)
    batch = await buffer.next_batch(2, exclude={0, 1})
    assert [message.seq for message in batch] == [2, 3]
    assert decode_device_message(batch[0].body).seq == 2
    await buffer.close()


async def test_rejected_message_moves_aside(tmp_path: Path) -> None:
    buffer = MessageBuffer(tmp_path / "buffer.sqlite3")
    await buffer.open()
    await buffer.append(hello, Priority.NUMERICS)
    await buffer.move_to_rejected(0, "seq", "bad")
    assert await buffer.pending_count() == 0
    async with buffer.db.execute("SELECT field, problem FROM rejected") as cursor:
        assert await cursor.fetchall() == [("seq", "bad")]
    await buffer.close()


async def test_corrupt_file_moved_aside(tmp_path: Path) -> None:
    path = tmp_path / "buffer.sqlite3"
    path.write_bytes(b"this is not a database" * 200)
    buffer = MessageBuffer(path)
    await buffer.open()
    assert buffer.corrupt_file_moved_to is not None
    assert buffer.corrupt_file_moved_to.read_bytes().startswith(b"this is not")
    message = await buffer.append(hello, Priority.NUMERICS)
    assert message.seq == 0
    await buffer.close()


async def test_damaged_pages_detected(tmp_path: Path) -> None:
    path = tmp_path / "buffer.sqlite3"
    buffer = MessageBuffer(path)
    await buffer.open()
    for _ in range(200):
        await buffer.append(hello, Priority.NUMERICS)
    await buffer.close()
    data = bytearray(path.read_bytes())
    data[4096:8192] = b"\xff" * 4096  # overwrite the second page
    path.write_bytes(bytes(data))
    reopened = MessageBuffer(path)
    await reopened.open()
    assert reopened.corrupt_file_moved_to is not None
    assert await reopened.pending_count() == 0
    await reopened.close()


async def test_sequence_continues_after_lost_buffer(tmp_path: Path) -> None:
    path = tmp_path / "buffer.sqlite3"
    buffer = MessageBuffer(path)
    await buffer.open()
    used = [(await buffer.append(hello, Priority.NUMERICS)).seq for _ in range(3)]
    await buffer.close()
    for leftover in tmp_path.glob("buffer.sqlite3*"):
        if not leftover.name.endswith(".seq"):
            leftover.unlink()
    path.write_bytes(b"garbage" * 100)

    fresh = MessageBuffer(path)
    await fresh.open()
    next_seq = (await fresh.append(hello, Priority.NUMERICS)).seq
    assert next_seq > max(used)
    await fresh.close()


def chunk(seq: int, index: int) -> EcgWaveform:
    return EcgWaveform(
        device_id="dev-1", seq=seq, sent_at=NOW, lead="II", sample_rate_hz=250.0,
        first_sample_at=NOW + timedelta(seconds=index / 250), first_sample_index=index,
        scale_uv=5.0, samples=[10] * 50,
    )


def alarm(seq: int) -> Emergency:
    return Emergency(device_id="dev-1", seq=seq, sent_at=NOW, alarm_id="a-1",
                     kind="asystole", priority="high", state="raised", started_at=NOW,
                     evidence="no QRS")


async def test_budget_discards_oldest_waveforms_as_gap(tmp_path: Path) -> None:
    buffer = MessageBuffer(tmp_path / "buffer.sqlite3", max_payload_bytes=20_000)
    await buffer.open()
    await buffer.append(alarm, Priority.ALARM)
    for number in range(100):
        await buffer.append(lambda seq, n=number: chunk(seq, n * 50), Priority.WAVEFORM)

    assert buffer.payload_bytes <= 20_000
    async with buffer.db.execute("SELECT sum(length(body)) FROM outbox") as cursor:
        assert (await cursor.fetchone())[0] == buffer.payload_bytes
    pending = [decode_device_message(m.body) for m in await buffer.next_batch(500)]
    assert any(isinstance(m, Emergency) for m in pending)
    gaps = sorted((m for m in pending if isinstance(m, DataGap)),
                  key=lambda gap: gap.first_sample_index or 0)
    chunks = [m for m in pending if isinstance(m, EcgWaveform)]
    assert gaps, "no gap was reported"
    assert gaps[0].first_sample_index == 0
    assert sum(gap.sample_count for gap in gaps) == buffer.dropped_samples
    # What remains starts where the discarded range ends, and nothing is lost silently.
    assert min(c.first_sample_index for c in chunks) == sum(g.sample_count for g in gaps)
    assert buffer.dropped_samples + 50 * len(chunks) == 100 * 50
    await buffer.close()


async def test_payload_bytes_survive_reopen(tmp_path: Path) -> None:
    buffer = MessageBuffer(tmp_path / "buffer.sqlite3")
    await buffer.open()
    for number in range(5):
        await buffer.append(lambda seq, n=number: chunk(seq, n * 50), Priority.WAVEFORM)
    await buffer.acknowledge([0, 1])
    expected = buffer.payload_bytes
    await buffer.close()
    reopened = MessageBuffer(tmp_path / "buffer.sqlite3")
    await reopened.open()
    assert reopened.payload_bytes == expected
    await reopened.close()


async def test_newest_alarms_first_then_backlog_oldest_first(tmp_path: Path) -> None:
    buffer = MessageBuffer(tmp_path / "buffer.sqlite3")
    await buffer.open()
    for priority in (Priority.WAVEFORM, Priority.ALARM, Priority.WAVEFORM,
                     Priority.ALARM, Priority.NUMERICS):
        await buffer.append(hello, priority)
    order = [message.seq for message in await buffer.next_batch(10)]
    assert order == [3, 1, 4, 0, 2]
    await buffer.close()


async def test_acknowledge_survives_unwritable_file(tmp_path: Path) -> None:
    # A full disk fails even a DELETE, because it writes the WAL. query_only makes
    # SQLite refuse writes the same way without filling a disk.
    buffer = MessageBuffer(tmp_path / "buffer.sqlite3")
    await buffer.open()
    for _ in range(4):
        await buffer.append(hello, Priority.NUMERICS)
    await buffer.db.execute("PRAGMA query_only = ON")

    assert await buffer.acknowledge([0, 1]) == 0
    assert buffer.undeleted_acknowledged == 2
    # Acknowledged messages are not offered again while their rows remain.
    assert [message.seq for message in await buffer.next_batch(10)] == [2, 3]
    assert await buffer.pending_count() == 2

    await buffer.db.execute("PRAGMA query_only = OFF")
    assert await buffer.acknowledge([2]) == 3
    assert buffer.undeleted_acknowledged == 0
    assert [message.seq for message in await buffer.next_batch(10)] == [3]
    await buffer.close()

    reopened = MessageBuffer(tmp_path / "buffer.sqlite3")
    await reopened.open()
    assert [message.seq for message in await reopened.next_batch(10)] == [3]
    await reopened.close()
