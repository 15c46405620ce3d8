"""The load generator's simulated beds against the real ingest endpoint."""

from __future__ import annotations

import asyncio

from central_testkit import Demo, LiveServer

from central.services import Services
from firmware_sim.load import LoadSettings, run_load


async def test_simulated_bed_stored_without_gaps(
    live_server: LiveServer, demo: Demo, services: Services
) -> None:
    settings = LoadSettings(
        url=live_server.ws_url("/ingest"),
        device_ids=[demo.device_id],
        secret=demo.device_secret,
        duration_s=1.0,
        alarm_interval_s=0.5,
        settle_s=0.5,
    )
    report = await asyncio.wait_for(run_load(settings), 30)
    assert report.connected == 1
    assert report.failures == []
    assert report.rejected == 0
    assert report.acknowledged == report.sent
    chunks = await services.pool.fetch(
        "SELECT first_sample_index, cardinality(samples) AS count"
        " FROM waveform_chunks ORDER BY first_sample_index"
    )
    assert len(chunks) == 4
    # 0.25 s at 250 Hz is 62.5 samples, so chunks alternate 62 and 63 samples and
    # each starts where the previous one ended.
    for previous, chunk in zip(chunks, chunks[1:]):
        assert chunk["first_sample_index"] == previous["first_sample_index"] + previous["count"]
    assert sum(chunk["count"] for chunk in chunks) == 250
    assert await services.pool.fetchval("SELECT count(*) FROM vitals") == 2
    assert await services.pool.fetchval("SELECT count(*) FROM alarms") == 2
