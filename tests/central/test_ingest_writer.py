"""Group commit of device batches against the real database."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import asyncpg
import pytest
from central_testkit import DEVICE_ID, Demo, numerics

import central.ingest_writer
from central.devices import register_device
from central.ingest_writer import IngestWriter
from central.services import Services
from protocol.messages import decode_device_message

OTHER_DEVICE = "monitor-2"


@contextlib.contextmanager
def writes_held(writer: IngestWriter) -> Iterator[None]:
    """Make ``writer`` act as if every transaction slot were busy, then free them."""
    writer._active = writer._max_concurrent
    yield
    writer._active = 0
    writer._start_writes()


async def queued(writer: IngestWriter, count: int) -> None:
    """Wait until ``count`` batches wait for a slot of ``writer``."""
    while len(writer._pending) < count:
        await asyncio.sleep(0)


def batch(seqs: range, device_id: str = DEVICE_ID) -> list:
    return [decode_device_message(numerics(seq, device_id=device_id)) for seq in seqs]


async def test_waiting_batches_share_transaction(
    services: Services, demo: Demo, monkeypatch: pytest.MonkeyPatch
) -> None:
    await register_device(services.pool, OTHER_DEVICE, None, "other-device-secret")
    calls: list[list[str]] = []
    real_store = central.ingest_writer.store_batches

    async def counting_store(pool, submissions):  # type: ignore[no-untyped-def]
        calls.append([device_id for device_id, _ in submissions])
        return await real_store(pool, submissions)

    monkeypatch.setattr(central.ingest_writer, "store_batches", counting_store)
    writer = IngestWriter(services.pool, services.counters, max_concurrent=1)
    with writes_held(writer):
        # Both batches queue while no transaction may start.
        first = asyncio.create_task(writer.store(DEVICE_ID, batch(range(3))))
        second = asyncio.create_task(
            writer.store(OTHER_DEVICE, batch(range(2), OTHER_DEVICE))
        )
        await queued(writer, 2)
    stored_first, stored_second = await asyncio.gather(first, second)
    assert calls == [[DEVICE_ID, OTHER_DEVICE]]
    assert services.counters.get("ingest.transactions") == 1
    assert services.counters.get("ingest.transaction_messages") == 5
    assert stored_first.seqs == [0, 1, 2]
    assert len(stored_first.new) == 3
    assert stored_first.location.patient_id == demo.patient_id
    assert stored_second.seqs == [0, 1]
    assert stored_second.location.patient_id is None


async def test_failing_batch_does_not_fail_others(
    services: Services, demo: Demo
) -> None:
    writer = IngestWriter(services.pool, services.counters, max_concurrent=1)
    with writes_held(writer):
        good = asyncio.create_task(writer.store(DEVICE_ID, batch(range(2))))
        # Not registered, so its ledger rows violate the devices foreign key.
        bad = asyncio.create_task(
            writer.store("unregistered", batch(range(2), "unregistered"))
        )
        await queued(writer, 2)
    stored = await good
    with pytest.raises(asyncpg.ForeignKeyViolationError):
        await bad
    assert len(stored.new) == 2
    count = await services.pool.fetchval("SELECT count(*) FROM device_messages")
    assert count == 2


async def test_same_device_batches_stay_ordered(services: Services, demo: Demo) -> None:
    writer = IngestWriter(services.pool, services.counters, max_concurrent=1)
    with writes_held(writer):
        first = asyncio.create_task(writer.store(DEVICE_ID, batch(range(3))))
        # A reconnected device's batch overlapping the first one's seqs.
        second = asyncio.create_task(writer.store(DEVICE_ID, batch(range(1, 5))))
        await queued(writer, 2)
    stored_first, stored_second = await asyncio.gather(first, second)
    assert len(stored_first.new) == 3
    assert [message.seq for message in stored_second.new] == [3, 4]
    assert stored_second.duplicates == 2
