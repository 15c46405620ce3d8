"""ECG retrieval: raw within budget, min/max buckets beyond it, clipping and gaps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
from central_testkit import DEVICE_ID, Demo, bearer

from central.services import Services
from central.storage import store_batch
from protocol.messages import EcgWaveform, decode_device_message, encode

BASE = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
PATH = "/patients/P-0001/waveform"
RATE = 250
SCALE_UV = 5.0
SPIKE_COUNTS = 3000  # 15 mV, far above the 400-count baseline pattern


def _chunk(second: int, spike: bool = False) -> str:
    samples = [(i * 37) % 400 - 200 for i in range(RATE)]
    if spike:
        samples[100] = SPIKE_COUNTS
    message = EcgWaveform(
        device_id=DEVICE_ID,
        seq=second,
        sent_at=BASE + timedelta(seconds=second + 1),
        lead="II",
        sample_rate_hz=float(RATE),
        first_sample_at=BASE + timedelta(seconds=second),
        first_sample_index=second * RATE,
        scale_uv=SCALE_UV,
        samples=samples,
    )
    return encode(message).decode()


async def _store_seconds(services: Services, seconds: list[int]) -> None:
    frames = [_chunk(second, spike=second == 7) for second in seconds]
    messages = [decode_device_message(frame) for frame in frames]
    await store_batch(services.pool, DEVICE_ID, messages)


def _range(start_s: float, end_s: float, **extra: str) -> dict[str, str]:
    return {
        "from": (BASE + timedelta(seconds=start_s)).isoformat(),
        "to": (BASE + timedelta(seconds=end_s)).isoformat(),
        **extra,
    }


async def _get(client: httpx.AsyncClient, demo: Demo, params: dict[str, str]) -> dict:
    response = await client.get(PATH, params=params, headers=bearer(demo.ana_token))
    assert response.status_code == 200, response.text
    return response.json()


async def test_short_range_raw(
    client: httpx.AsyncClient, services: Services, demo: Demo
) -> None:
    await _store_seconds(services, list(range(20)))
    body = await _get(client, demo, _range(0, 20))
    (lead,) = body["leads"]
    assert lead["lead"] == "II"
    assert lead["resolution"] == {"mode": "raw"}
    assert lead["sample_count"] == 20 * RATE
    assert len(lead["segments"]) == 20
    assert lead["segments"][7]["samples_uv"][100] == SPIKE_COUNTS * SCALE_UV


async def test_range_clips_chunks(
    client: httpx.AsyncClient, services: Services, demo: Demo
) -> None:
    await _store_seconds(services, [0, 1])
    body = await _get(client, demo, _range(0.5, 1.5))
    segments = body["leads"][0]["segments"]
    assert [s["first_sample_index"] for s in segments] == [125, 250]
    assert [len(s["samples_uv"]) for s in segments] == [125, 125]
    assert segments[0]["first_sample_at"] == (
        BASE + timedelta(seconds=0.5)
    ).isoformat()


async def test_long_range_min_max_keeps_spike(
    client: httpx.AsyncClient, services: Services, demo: Demo
) -> None:
    seconds = [second for second in range(20) if second != 10]
    await _store_seconds(services, seconds)
    body = await _get(client, demo, _range(0, 20, max_points="200"))
    lead = body["leads"][0]
    assert lead["resolution"] == {"mode": "minmax", "bucket_s": 0.2}
    buckets = lead["buckets"]
    # 100 buckets of 0.2 s, less the 5 of the missing second, which stay absent.
    assert len(buckets) == 95
    assert sum(bucket["samples"] for bucket in buckets) == 19 * RATE
    gap_start = (BASE + timedelta(seconds=10)).isoformat()
    assert gap_start not in {bucket["at"] for bucket in buckets}
    assert max(bucket["max_uv"] for bucket in buckets) == SPIKE_COUNTS * SCALE_UV
    assert min(bucket["min_uv"] for bucket in buckets) == -200 * SCALE_UV


async def test_read_audited(
    client: httpx.AsyncClient, services: Services, demo: Demo
) -> None:
    await _store_seconds(services, [0])
    await _get(client, demo, _range(0, 1))
    detail = await services.pool.fetchval(
        "SELECT detail FROM audit_log WHERE action = 'waveform.read'"
    )
    assert detail["leads"] == ["II"]


async def test_unassigned_nurse_403(client: httpx.AsyncClient, demo: Demo) -> None:
    response = await client.get(
        PATH, params=_range(0, 1), headers=bearer(demo.ben_token)
    )
    assert response.status_code == 403


BAD_PARAMETERS = [
        (_range(0, 1, lead="XX"), "lead: unknown ECG lead 'XX'"),
        (_range(0, 7200), "from: the range may span at most 1:00:00"),
        (_range(5, 1), "from: 2030-01-01T12:00:05+00:00 must be before to"),
        (_range(0, 1, max_points="10"), "max_points: expected 100 to 50000"),
        ({"from": "soon"}, "from: expected an ISO 8601 time"),
]


async def test_bad_parameters_400(client: httpx.AsyncClient, demo: Demo) -> None:
    for params, words in BAD_PARAMETERS:
        response = await client.get(
            PATH, params=params, headers=bearer(demo.ana_token)
        )
        assert response.status_code == 400, params
        assert words in response.json()["error"], params
