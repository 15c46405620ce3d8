"""Agent and central killed with SIGKILL mid-stream and restarted.

The board replays record 100 at 20x. Afterwards central must hold every sample the
board produced exactly once, except the start offset and, when the agent was dead,
the samples the board sent meanwhile: a serial line keeps nothing for a reader that
is not there.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import pytest
from fault_rehearsal import (
    SAMPLE_RATE_HZ,
    SPEED,
    STARTUP_ALLOWANCE_S,
    assert_intact,
    buffered_seqs,
    finish_and_audit,
    running_ward,
    start_streaming,
    stored_end,
    stored_seqs,
    wait_for,
)

from firmware_sim.fault_proxy import FaultProxy, ProxyMode

pytestmark = pytest.mark.timeout(120)

STREAM_BEFORE_FAULT_S = 3.0
# Long enough for a few hundred messages to wait in the agent's outbox.
UNACKNOWLEDGED_S = 1.5
DOWN_S = 2.0
STREAM_AFTER_FAULT_S = 4.0


async def _wait_for_first_rows(database_url: str) -> None:
    async def streaming() -> bool:
        return await stored_end(database_url) > 0

    await wait_for(streaming, 30, "the first ECG rows at central")
    await asyncio.sleep(STREAM_BEFORE_FAULT_S)


async def test_agent_killed_and_restarted(tmp_path: Path, database_url: str) -> None:
    async with (
        running_ward(tmp_path, database_url) as ward,
        FaultProxy(ward.port) as proxy,
    ):
        ward.agent_central_url = f"ws://127.0.0.1:{proxy.port}/ingest"
        await start_streaming(ward)
        await _wait_for_first_rows(database_url)
        # Central stops hearing from the agent, so its outbox fills, then the
        # agent dies with those messages on disk only.
        proxy.set_mode(ProxyMode.BLACKHOLE)
        await asyncio.sleep(UNACKNOWLEDGED_S)
        assert await asyncio.to_thread(ward.stop, "agent", signal.SIGKILL) == (
            -signal.SIGKILL
        )
        killed_at = time.monotonic()
        waiting = buffered_seqs(ward.buffer_path)
        proxy.set_mode(ProxyMode.PASS)
        await asyncio.sleep(DOWN_S)
        ward.start_agent()
        await asyncio.sleep(STREAM_AFTER_FAULT_S)
        down_s = time.monotonic() - killed_at - STREAM_AFTER_FAULT_S
        audit = await finish_and_audit(ward, database_url, "agent SIGKILL")

    dropped = audit.produced - audit.sent
    print(f"agent SIGKILL: {len(waiting)} messages waited in the outbox at the kill;"
          f" agent down {down_s:.1f} s plus its start-up; of the gap, {dropped} samples"
          f" dropped by the board with no reader, {audit.gap_samples - dropped} sent"
          " on the line but never buffered")
    assert waiting, "the outbox was empty at the kill, so nothing was rehearsed"
    missing = waiting - await stored_seqs(database_url)
    assert not missing, f"outbox messages never stored: {sorted(missing)[:10]}"
    assert_intact(audit, allowed_gaps=1)
    assert len(audit.gaps) == 1, "killing the agent left no gap; check the audit"
    _, gap = audit.gaps[0]
    # The gap is what the board sent while no agent read the line, including the
    # agent's start-up. Anything longer would be data lost after the agent read it.
    limit = (down_s + STARTUP_ALLOWANCE_S) * SPEED * SAMPLE_RATE_HZ
    assert gap <= limit, f"gap of {gap} samples exceeds {limit:.0f}"


async def test_central_killed_and_restarted(tmp_path: Path, database_url: str) -> None:
    async with running_ward(tmp_path, database_url) as ward:
        await start_streaming(ward)
        await _wait_for_first_rows(database_url)
        assert await asyncio.to_thread(ward.stop, "central", signal.SIGKILL) == (
            -signal.SIGKILL
        )
        await asyncio.sleep(DOWN_S)
        await asyncio.to_thread(ward.start_central)
        await asyncio.sleep(STREAM_AFTER_FAULT_S)
        audit = await finish_and_audit(ward, database_url, "central SIGKILL")

    assert_intact(audit)
