"""The dashboards' WebSocket (/events): authenticate, subscribe per patient, relay.

Browsers cannot set headers on a WebSocket, so a client may authenticate either with
``Authorization: Bearer`` on the upgrade or with a first ``auth`` message. Consent is
checked, and audited, on every ``subscribe``. The token and every subscription's
consent are checked again on each request and every CONSENT_RECHECK_S, so an expired
token or an ended assignment stops the stream. Events come from the hub through a
bounded per-client queue (see ``central.hub``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import msgspec
from starlette.websockets import WebSocket, WebSocketDisconnect

from central.audit import Actor
from central.auth import AuthError, Principal, authenticate_token, bearer_token
from central.consent import REASON_NO_ASSIGNMENT, AccessDenied, check_access, may_read
from central.hub import ClientQueue, user_channel
from central.services import Services, services_of
from protocol.errors import ProtocolError
from protocol.messages import (
    Authenticate,
    ErrorEvent,
    Subscribe,
    Subscribed,
    Unsubscribe,
    decode_client_request,
    encode,
)

logger = logging.getLogger(__name__)

AUTH_TIMEOUT_S = 10.0
MAX_SUBSCRIPTIONS = 64
# How often an open connection's token and every subscription's consent are checked
# again, so an ended assignment or an expired token stops the stream within this time.
CONSENT_RECHECK_S = 15.0
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY_VIOLATION = 1008
CLOSE_TRY_AGAIN_LATER = 1013
AUTH_HINT = (
    "send Authorization: Bearer <token> on the upgrade or a first message "
    '{"type":"auth","v":1,"token":"..."}'
)


class _AuthFailed(Exception):
    """Authentication of the events socket failed."""


async def events_endpoint(websocket: WebSocket) -> None:
    """Serve one dashboard connection from upgrade to close."""
    services = services_of(websocket)
    await websocket.accept()
    try:
        token = await _read_token(websocket)
        principal = await authenticate_token(
            services.pool, services.settings.jwt_secret, token
        )
    except WebSocketDisconnect:
        return
    except (AuthError, _AuthFailed) as exc:
        await _reject_auth(services, websocket, str(exc))
        return
    await EventsClient(services, websocket, principal, token).run()


async def _read_token(websocket: WebSocket) -> str:
    header_token = bearer_token(websocket.headers.get("authorization"))
    if header_token is not None:
        return header_token
    try:
        frame = await asyncio.wait_for(websocket.receive(), AUTH_TIMEOUT_S)
    except TimeoutError:
        raise _AuthFailed(
            f"no authentication within {AUTH_TIMEOUT_S:.0f} s; {AUTH_HINT}"
        ) from None
    if frame["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(frame.get("code", 1000))
    try:
        request = decode_client_request(frame.get("text") or frame.get("bytes") or b"")
    except ProtocolError as exc:
        raise _AuthFailed(f"invalid auth message ({exc}); {AUTH_HINT}") from None
    if not isinstance(request, Authenticate):
        raise _AuthFailed(f"not authenticated; {AUTH_HINT}")
    return request.token


async def _reject_auth(services: Services, websocket: WebSocket, problem: str) -> None:
    services.counters.increment("events.auth_refused")
    logger.warning("rejected events connection: %s", problem)
    await services.audit.record(
        services.pool,
        Actor.anonymous(),
        "access",
        outcome="refused",
        detail={"path": "/events", "problem": problem},
    )
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        await websocket.send_text(
            encode(ErrorEvent(status=401, message=problem)).decode()
        )
        await websocket.close(CLOSE_POLICY_VIOLATION)


class EventsClient:
    """One authenticated dashboard connection and its subscriptions."""

    def __init__(
        self, services: Services, websocket: WebSocket, principal: Principal, token: str
    ) -> None:
        self.services = services
        self.websocket = websocket
        self.principal = principal
        self.token = token
        self.subscriptions: set[str] = set()
        self.queue = ClientQueue(f"user {principal.user_id}", services.counters)
        self._send_lock = asyncio.Lock()

    async def run(self) -> None:
        self.services.counters.increment("events.connections")
        logger.info("events client for user %s connected", self.principal.user_id)
        # Events addressed to this user, such as alarm escalations, need no
        # subscription; their sender checked consent for each recipient.
        self.services.hub.subscribe(user_channel(self.principal.user_id), self.queue)
        tasks = {
            asyncio.create_task(self._serve_requests()),
            asyncio.create_task(self._relay_events()),
            asyncio.create_task(self._recheck_periodically()),
        }
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.services.hub.remove(self.queue)
            self.queue.close("client disconnected")
            for task in tasks:
                task.cancel()
            outcomes = await asyncio.gather(*tasks, return_exceptions=True)
            self._log_failures(outcomes)
            logger.info(
                "events client for user %s disconnected", self.principal.user_id
            )

    def _log_failures(self, outcomes: list[object]) -> None:
        for outcome in outcomes:
            expected = (asyncio.CancelledError, WebSocketDisconnect)
            if isinstance(outcome, BaseException) and not isinstance(outcome, expected):
                logger.error(
                    "events client for user %s failed: %r",
                    self.principal.user_id,
                    outcome,
                    exc_info=outcome,
                )

    async def _send(self, text: str) -> None:
        async with self._send_lock:
            await self.websocket.send_text(text)

    async def _reply(self, message: msgspec.Struct) -> None:
        await self._send(encode(message).decode())

    async def _relay_events(self) -> None:
        while (payload := await self.queue.get()) is not None:
            await self._send(payload)
        code = CLOSE_GOING_AWAY
        if self.queue.close_reason != "server shutting down":
            code = CLOSE_TRY_AGAIN_LATER
        with contextlib.suppress(WebSocketDisconnect, RuntimeError):
            await self.websocket.close(code, self.queue.close_reason)

    async def _serve_requests(self) -> None:
        while True:
            frame = await self.websocket.receive()
            if frame["type"] == "websocket.disconnect":
                return
            text = frame.get("text")
            if text is None:
                await self._reply(
                    ErrorEvent(status=400, message="send JSON text frames")
                )
                continue
            try:
                request = decode_client_request(text)
            except ProtocolError as exc:
                await self._reply(ErrorEvent(status=400, message=str(exc)))
                continue
            if not await self._handle(request):
                return

    async def _handle(self, request: Authenticate | Subscribe | Unsubscribe) -> bool:
        """Act on one request; return False when the connection must close."""
        if isinstance(request, Unsubscribe):
            self.subscriptions.discard(request.patient_id)
            self.services.hub.unsubscribe(request.patient_id, self.queue)
            return True
        if isinstance(request, Authenticate):
            self.token = request.token
        if not await self._recheck_token():
            return False
        if isinstance(request, Subscribe):
            await self._subscribe(request.patient_id)
        return True

    async def _recheck_periodically(self) -> None:
        while True:
            await asyncio.sleep(CONSENT_RECHECK_S)
            if not await self._recheck_token():
                return
            for patient_id in sorted(self.subscriptions):
                if not await may_read(self.services.pool, self.principal, patient_id):
                    await self._end_subscription(patient_id)

    async def _end_subscription(self, patient_id: str) -> None:
        self.subscriptions.discard(patient_id)
        self.services.hub.unsubscribe(patient_id, self.queue)
        await self._refuse(
            patient_id,
            "events.subscription_ended",
            f"you are no longer assigned to patient {patient_id}",
        )

    async def _refuse(
        self,
        patient_id: str,
        action: str,
        message: str,
        reason: str = REASON_NO_ASSIGNMENT,
    ) -> None:
        """Count, log and audit a consent refusal, then tell the client with a 403."""
        services = self.services
        services.counters.increment("consent.refused")
        logger.warning(
            "%s refused for patient %s and user %s: %s",
            action,
            patient_id,
            self.principal.user_id,
            reason,
        )
        await services.audit.record(
            services.pool,
            Actor.user(self.principal.user_id),
            action,
            outcome="refused",
            patient_id=patient_id,
            detail={"reason": reason},
        )
        await self._reply(ErrorEvent(status=403, message=message, patient_id=patient_id))

    async def _recheck_token(self) -> bool:
        try:
            principal = await authenticate_token(
                self.services.pool, self.services.settings.jwt_secret, self.token
            )
        except AuthError as exc:
            problem = exc.problem
        else:
            if principal.user_id == self.principal.user_id:
                self.principal = principal
                return True
            problem = "token belongs to another user than the one connected"
        async with self._send_lock:
            await _reject_auth(self.services, self.websocket, problem)
        return False

    async def _subscribe(self, patient_id: str) -> None:
        if patient_id in self.subscriptions:
            await self._reply(Subscribed(patient_id=patient_id))
            return
        if len(self.subscriptions) >= MAX_SUBSCRIPTIONS:
            message = f"at most {MAX_SUBSCRIPTIONS} subscriptions per connection"
            await self._reply(
                ErrorEvent(status=429, message=message, patient_id=patient_id)
            )
            return
        services = self.services
        actor = Actor.user(self.principal.user_id)
        decision = await check_access(services.pool, self.principal, patient_id)
        if not decision.allowed:
            reason = decision.refusal or REASON_NO_ASSIGNMENT
            denied = AccessDenied(patient_id, reason)
            await self._refuse(patient_id, "events.subscribe", denied.message, reason)
            return
        # The basis shows reviewers which live views were opened by break-the-glass.
        await services.audit.record(
            services.pool,
            actor,
            "events.subscribe",
            patient_id=patient_id,
            detail={"access": decision.basis},
        )
        await self._reply(Subscribed(patient_id=patient_id))
        # Consent is checked again every CONSENT_RECHECK_S while the subscription
        # lasts, so an ended assignment stops the stream within that time.
        self.subscriptions.add(patient_id)
        services.hub.subscribe(patient_id, self.queue)
