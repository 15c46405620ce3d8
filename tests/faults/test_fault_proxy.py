"""The fault-injecting proxy, mode by mode, in front of a small echo server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from firmware_sim.fault_proxy import LOCALHOST, FaultProxy, ProxyMode

pytestmark = pytest.mark.timeout(30)

REPLY_TIMEOUT_S = 2.0
SILENCE_S = 0.5


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(4096):
            writer.write(chunk)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


@pytest.fixture
async def echo_port() -> AsyncIterator[int]:
    server = await asyncio.start_server(_echo, LOCALHOST, 0)
    yield server.sockets[0].getsockname()[1]
    server.close()


@pytest.fixture
async def proxy(echo_port: int) -> AsyncIterator[FaultProxy]:
    async with FaultProxy(echo_port) as running:
        yield running


async def _open(proxy: FaultProxy) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(LOCALHOST, proxy.port)


async def _round_trip(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, payload: bytes
) -> bytes:
    writer.write(payload)
    await writer.drain()
    return await asyncio.wait_for(reader.readexactly(len(payload)), REPLY_TIMEOUT_S)


async def _read_until_closed(reader: asyncio.StreamReader) -> bytes:
    """Read until EOF or reset; return what arrived before."""
    received = b""
    try:
        while chunk := await asyncio.wait_for(reader.read(4096), REPLY_TIMEOUT_S):
            received += chunk
    except ConnectionResetError:
        pass
    return received


async def test_pass_forwards_both_ways(proxy: FaultProxy) -> None:
    reader, writer = await _open(proxy)
    assert await _round_trip(reader, writer, b"hello") == b"hello"
    assert await _round_trip(reader, writer, b"x" * 100_000) == b"x" * 100_000
    writer.close()
    assert proxy.counters.bytes_to_upstream == 100_005
    assert proxy.counters.bytes_to_client == 100_005


async def test_drop_resets_open_connection(proxy: FaultProxy) -> None:
    reader, writer = await _open(proxy)
    assert await _round_trip(reader, writer, b"before") == b"before"
    proxy.set_mode(ProxyMode.DROP)
    assert await _read_until_closed(reader) == b""
    assert proxy.open_connections == 0
    writer.close()


async def test_drop_rejects_new_connections(proxy: FaultProxy) -> None:
    proxy.set_mode(ProxyMode.DROP)
    reader, writer = await _open(proxy)
    writer.write(b"anyone there?")
    with pytest.raises((ConnectionResetError, BrokenPipeError)):
        await writer.drain()
        await _read_until_closed(reader)
        await writer.drain()
    writer.close()
    assert proxy.counters.dropped_at_accept == 1


async def test_drop_then_pass_accepts_again(proxy: FaultProxy) -> None:
    proxy.set_mode(ProxyMode.DROP)
    proxy.set_mode(ProxyMode.PASS)
    reader, writer = await _open(proxy)
    assert await _round_trip(reader, writer, b"back") == b"back"
    writer.close()


async def test_blackhole_holds_bytes_until_pass(proxy: FaultProxy) -> None:
    reader, writer = await _open(proxy)
    assert await _round_trip(reader, writer, b"warm") == b"warm"
    proxy.set_mode(ProxyMode.BLACKHOLE)
    writer.write(b"held")
    await writer.drain()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.read(4096), SILENCE_S)
    assert proxy.open_connections == 1
    proxy.set_mode(ProxyMode.PASS)
    received = await asyncio.wait_for(reader.readexactly(4), REPLY_TIMEOUT_S)
    assert received == b"held"
    writer.close()


async def test_blackhole_accepts_but_forwards_nothing(proxy: FaultProxy) -> None:
    proxy.set_mode(ProxyMode.BLACKHOLE)
    reader, writer = await _open(proxy)
    writer.write(b"new")
    await writer.drain()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.read(4096), SILENCE_S)
    assert proxy.counters.accepted == 1
    assert proxy.counters.bytes_to_upstream == 0
    writer.close()


async def test_slow_delays_each_chunk(proxy: FaultProxy) -> None:
    reader, writer = await _open(proxy)
    latency_s = 0.3
    proxy.set_mode(ProxyMode.SLOW, latency_s=latency_s, bytes_per_s=1_000_000)
    started = time.monotonic()
    assert await _round_trip(reader, writer, b"ping") == b"ping"
    # Both directions pass through the proxy, so the round trip pays it twice.
    assert time.monotonic() - started >= 2 * latency_s
    writer.close()


async def test_slow_throttles_bytes(proxy: FaultProxy) -> None:
    reader, writer = await _open(proxy)
    rate = 20_000
    proxy.set_mode(ProxyMode.SLOW, latency_s=0.0, bytes_per_s=rate)
    payload = b"y" * 10_000
    started = time.monotonic()
    assert await _round_trip(reader, writer, payload) == payload
    # The echo streams back while the request is still arriving, so the two
    # directions overlap and the round trip takes about len / rate, not twice that.
    assert time.monotonic() - started >= 0.9 * len(payload) / rate
    writer.close()


async def test_slow_rejects_zero_rate(proxy: FaultProxy) -> None:
    with pytest.raises(ValueError, match="bytes_per_s"):
        proxy.set_mode(ProxyMode.SLOW, bytes_per_s=0)


async def test_reset_cuts_message_in_half(proxy: FaultProxy) -> None:
    reader, writer = await _open(proxy)
    assert await _round_trip(reader, writer, b"whole") == b"whole"
    proxy.set_mode(ProxyMode.RESET)
    writer.write(b"z" * 1000)
    await writer.drain()
    with pytest.raises(ConnectionResetError):
        while await asyncio.wait_for(reader.read(4096), REPLY_TIMEOUT_S):
            pass
    assert proxy.counters.resets == 1
    # Only the first half reached the server, so no more than that can come back.
    assert proxy.counters.bytes_to_upstream == len(b"whole")
    writer.close()


async def test_reset_then_pass_forwards_again(proxy: FaultProxy) -> None:
    proxy.set_mode(ProxyMode.RESET)
    reader, writer = await _open(proxy)
    writer.write(b"cut")
    with pytest.raises(ConnectionResetError):
        while await asyncio.wait_for(reader.read(4096), REPLY_TIMEOUT_S):
            pass
    writer.close()
    proxy.set_mode(ProxyMode.PASS)
    reader, writer = await _open(proxy)
    assert await _round_trip(reader, writer, b"again") == b"again"
    writer.close()
