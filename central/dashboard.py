"""The ward dashboard: static files under /ward/ and the alarm audio-pause route.

The dashboard is plain HTML, CSS and JavaScript modules in ``central/dashboard/``,
served as they are (no build step, nothing from other hosts). Every response carries
a Content-Security-Policy that allows only this origin, so an injected script or a
third-party resource cannot run or load.

``POST /patients/{patient_id}/alarms/{alarm_id}/audio-pause`` records that a
clinician silenced the audible signal of an alarm for a while on their screen. The
pause is audited and returned; the alarm stays active and visible.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Message, Receive, Scope, Send

from central.api import ApiError, alarm_id_of, patient_id_of
from central.audit import Actor
from central.auth import require_user
from central.consent import authorize_read
from central.services import services_of

logger = logging.getLogger(__name__)

STATIC_DIRECTORY = Path(__file__).with_name("dashboard")
# IEC 60601-1-8 lets an operator pause an alarm's audio for a limited time. Two
# minutes is a common default. The five-minute cap keeps a pause from being forgotten.
DEFAULT_AUDIO_PAUSE_S = 120
MAX_AUDIO_PAUSE_S = 300
SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; connect-src 'self'; img-src 'self' data:; "
        b"style-src 'self'; script-src 'self'; object-src 'none'; "
        b"base-uri 'none'; frame-ancestors 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]


class _SecureStatic:
    """Serve the dashboard files with the security headers above."""

    def __init__(self, directory: Path) -> None:
        self.files = StaticFiles(directory=directory, html=True)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        await self.files(scope, receive, send_with_headers)


class AudioPause(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    seconds: Annotated[int, msgspec.Meta(ge=1, le=MAX_AUDIO_PAUSE_S)] = (
        DEFAULT_AUDIO_PAUSE_S
    )


async def pause_alarm_audio(request: Request) -> JSONResponse:
    """Audit an audio pause of one alarm and return until when it lasts.
    ---
    summary: Audit an audio pause of one alarm
    tags: [care]
    security: [{bearerAuth: []}]
    parameters:
      - {$ref: "#/components/parameters/PatientId"}
      - {$ref: "#/components/parameters/AlarmId"}
    requestBody:
      required: false
      content:
        application/json:
          schema: {$ref: "#/components/schemas/AudioPause"}
    responses:
      "200": {description: Until when the pause lasts}
      "400": {$ref: "#/components/responses/BadRequest"}
      "401": {$ref: "#/components/responses/Unauthorized"}
      "403": {$ref: "#/components/responses/Forbidden"}
      "404": {$ref: "#/components/responses/NotFound"}
    """
    principal = await require_user(request)
    services = services_of(request)
    patient_id = patient_id_of(request)
    alarm_id = alarm_id_of(request)
    await authorize_read(services, principal, patient_id, "alarm.audio_pause")
    body = await request.body()
    try:
        pause = msgspec.json.decode(body or b"{}", type=AudioPause)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise ApiError(
            400,
            f'invalid audio pause: {exc}; send {{"seconds": 1..{MAX_AUDIO_PAUSE_S}}}',
        ) from None
    paused_until = datetime.now(UTC) + timedelta(seconds=pause.seconds)
    await services.audit.record(
        services.pool,
        Actor.user(principal.user_id),
        "alarm.audio_pause",
        patient_id=patient_id,
        detail={
            "alarm_id": alarm_id,
            "seconds": pause.seconds,
            "paused_until": paused_until.isoformat(),
        },
    )
    logger.info(
        "alarm %s of patient %s: audio paused for %d s by user %s",
        alarm_id,
        patient_id,
        pause.seconds,
        principal.user_id,
    )
    return JSONResponse(
        {
            "patient_id": patient_id,
            "alarm_id": alarm_id,
            "paused_until": paused_until.isoformat(),
        }
    )


async def to_dashboard(request: Request) -> RedirectResponse:
    """Redirect to the ward dashboard.
    ---
    summary: Redirect to the ward dashboard's static page
    tags: [meta]
    responses:
      "307": {description: Redirect to /ward/}
    """
    return RedirectResponse("/ward/", status_code=307)


routes = [
    Route("/", to_dashboard, methods=["GET"]),
    Route(
        "/patients/{patient_id}/alarms/{alarm_id}/audio-pause",
        pause_alarm_audio,
        methods=["POST"],
    ),
    Mount("/ward", app=_SecureStatic(STATIC_DIRECTORY), name="ward"),
]
