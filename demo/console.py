"""A terminal view of one patient: live heart rate and emergencies, as a nurse sees them."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime

import httpx
from websockets.asyncio.client import connect

from protocol.codes import VitalSign
from protocol.messages import (
    Authenticate,
    ErrorEvent,
    PatientEmergency,
    Subscribe,
    Subscribed,
    VitalsUpdate,
    decode_server_event,
    encode,
)

HEART_RATE_CODE = VitalSign.HEART_RATE.value.mdc_reference_id


def _clock(moment: datetime) -> str:
    return moment.astimezone().strftime("%H:%M:%S")


def describe(event: object) -> str | None:
    """Return the line a nurse would read for an event, or None for waveform-only ones."""
    if isinstance(event, VitalsUpdate):
        for measurement in event.measurements:
            if measurement.code == HEART_RATE_CODE:
                quality = (
                    f", signal quality {measurement.quality:.2f}"
                    if measurement.quality is not None else ""
                )
                return (f"{_clock(event.recorded_at)}  {event.patient_id} {event.bed}  "
                        f"heart rate {measurement.value:.0f} /min{quality}")
        return None
    if isinstance(event, PatientEmergency):
        banner = "!!! ALARM" if event.state == "raised" else "--- cleared"
        return (f"{_clock(event.started_at)}  {banner} {event.priority.upper()} "
                f"{event.kind} for {event.patient_id} {event.bed}: {event.evidence}")
    if isinstance(event, Subscribed):
        return f"subscribed to {event.patient_id}"
    if isinstance(event, ErrorEvent):
        return f"refused ({event.status}): {event.message}"
    return None


async def watch_patient(
    events_url: str, token: str, patient_id: str, show: Callable[[str], None] = print,
) -> ErrorEvent | None:
    """Subscribe to one patient and print what arrives until cancelled or refused.

    Returns the error that ended the subscription (an expired token is one), or
    None when central closed the connection.
    """
    async with connect(events_url) as websocket:
        await websocket.send(encode(Authenticate(token=token)).decode())
        await websocket.send(encode(Subscribe(patient_id=patient_id)).decode())
        async for frame in websocket:
            event = decode_server_event(frame)
            line = describe(event)
            if line:
                show(line)
            if isinstance(event, ErrorEvent):
                return event
    return None


async def show_refusals(
    base_url: str, events_url: str, token: str, patient_id: str,
    show: Callable[[str], None] = print,
) -> None:
    """Show what an unassigned clinician gets: a 403 on REST and on the event stream."""
    async with httpx.AsyncClient(base_url=base_url, timeout=10.0) as client:
        response = await client.get(
            f"/patients/{patient_id}/vitals",
            headers={"Authorization": f"Bearer {token}"},
        )
    try:
        detail = response.json()
    except json.JSONDecodeError:
        detail = response.text
    show(f"GET /patients/{patient_id}/vitals -> {response.status_code} {detail}")
    await watch_patient(events_url, token, patient_id, show)
