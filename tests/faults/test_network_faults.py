"""The link between agent and central cut, stalled, slowed and reset by a proxy.

The agent reaches central only through ``FaultProxy``; the test switches its mode
while the board replays record 100 at 20x. After each rehearsal central must hold
every sample the board produced after the start offset exactly once.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from fault_rehearsal import (
    assert_intact,
    finish_and_audit,
    running_ward,
    start_streaming,
    stored_end,
    wait_for,
)

from demo.stack import Stack
from firmware_sim.fault_proxy import FaultProxy, ProxyMode

STREAM_BEFORE_FAULT_S = 3.0
DROP_S = 3.0
SLOW_S = 3.0
SLOW_LATENCY_S = 0.2
# Below the roughly 40 kB/s of JSON the agent sends at 20x, so a backlog builds up.
SLOW_BYTES_PER_S = 24 * 1024
RECOVER_S = 2.0
RESET_TIMEOUT_S = 5.0
# The agent gives a connection up when sent messages wait 15 s (ack_timeout_s) with
# no acknowledgement, and pings every 10 s with a 10 s timeout as a second check.
BLACKHOLE_DETECTION_LIMIT_S = 25.0


async def _stream_through(proxy: FaultProxy, ward: Stack, database_url: str) -> None:
    ward.agent_central_url = f"ws://127.0.0.1:{proxy.port}/ingest"
    await start_streaming(ward)

    async def streaming() -> bool:
        return await stored_end(database_url) > 0

    await wait_for(streaming, 30, "the first ECG rows at central")
    await asyncio.sleep(STREAM_BEFORE_FAULT_S)


@pytest.mark.timeout(120)
async def test_drop_slow_and_reset(tmp_path: Path, database_url: str) -> None:
    async with (
        running_ward(tmp_path, database_url) as ward,
        FaultProxy(ward.port) as proxy,
    ):
        await _stream_through(proxy, ward, database_url)

        proxy.set_mode(ProxyMode.DROP)
        await asyncio.sleep(DROP_S)
        rejected_at_accept = proxy.counters.dropped_at_accept
        proxy.set_mode(ProxyMode.PASS)
        await asyncio.sleep(RECOVER_S)

        proxy.set_mode(
            ProxyMode.SLOW, latency_s=SLOW_LATENCY_S, bytes_per_s=SLOW_BYTES_PER_S
        )
        await asyncio.sleep(SLOW_S)
        proxy.set_mode(ProxyMode.PASS)
        await asyncio.sleep(RECOVER_S)

        proxy.set_mode(ProxyMode.RESET)

        async def was_reset() -> bool:
            return proxy.counters.resets >= 1

        await wait_for(was_reset, RESET_TIMEOUT_S, "a reset in mid-message")
        proxy.set_mode(ProxyMode.PASS)
        await asyncio.sleep(RECOVER_S)
        audit = await finish_and_audit(ward, database_url, "network drop/slow/reset")
        accepted = proxy.counters.accepted

    print(f"network drop/slow/reset: {rejected_at_accept} reconnects reset during the drop,"
          f" {accepted} connections in all")
    assert rejected_at_accept >= 1, "the agent did not try to reconnect during the drop"
    assert_intact(audit)


@pytest.mark.slow
@pytest.mark.timeout(150)
async def test_blackhole_noticed_by_agent(tmp_path: Path, database_url: str) -> None:
    async with (
        running_ward(tmp_path, database_url) as ward,
        FaultProxy(ward.port) as proxy,
    ):
        await _stream_through(proxy, ward, database_url)
        connections = proxy.counters.accepted
        proxy.set_mode(ProxyMode.BLACKHOLE)
        started = time.monotonic()

        async def reconnecting() -> bool:
            # A new connection means the agent gave up on the stalled one.
            return proxy.counters.accepted > connections

        try:
            noticed_s: float | None = await wait_for(
                reconnecting, BLACKHOLE_DETECTION_LIMIT_S, "the agent to reconnect"
            )
        except AssertionError:
            noticed_s = None
        blackholed_s = time.monotonic() - started
        proxy.set_mode(ProxyMode.PASS)
        await asyncio.sleep(RECOVER_S * 2)
        audit = await finish_and_audit(ward, database_url, "network black hole")
        agent_log = (ward.workdir / "logs" / "agent.log").read_text(errors="replace")

    noticed = "never" if noticed_s is None else f"after {noticed_s:.1f} s"
    alarmed = "technical condition link_lost present" in agent_log
    print(f"network black hole: {blackholed_s:.1f} s black-holed; the agent noticed"
          f" the dead connection {noticed}; link_lost alarm raised: {alarmed}")
    assert noticed_s is not None, (
        f"the agent kept a black-holed connection for {blackholed_s:.0f} s without"
        " noticing"
    )
    assert_intact(audit)
