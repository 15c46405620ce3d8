"""REST routes of the end-to-end encrypted chat: threads, members and messages.

Central never has the chat text. It stores each user's public keys and the sealed
envelopes (``protocol.chat``), checks who may do what, and relays each new envelope
as a ``chat.message`` event to the clients subscribed to the thread's patient.

Every thread is about one patient, so consent decides membership: a clinician may
create, join, read or post to a thread only while they may read its patient, and
may add only colleagues who may read that patient too. A member whose assignment
ended is left out of the member keys, so new messages are no longer sealed for them.
Each action is audited without any message content.
"""

from __future__ import annotations

import logging
import re
import uuid
from typing import Annotated, Any

import asyncpg
import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from central.api import ApiError, parse_int
from central.audit import Actor
from central.auth import Principal, load_principal, require_user
from central.chat_keys import key_json, read_json_body
from central.consent import authorize_read, may_read
from central.services import Services, services_of
from protocol.chat import ChatEnvelope, check_envelope
from protocol.errors import ProtocolError
from protocol.messages import ChatMessageEvent, encode

logger = logging.getLogger(__name__)

DEFAULT_PAGE = 200
MAX_PAGE = 1000
_IDENTIFIER = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_THREAD_ID = re.compile(r"^T-[0-9a-f]{32}$")


class NewThread(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    patient_id: Annotated[
        str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")
    ]
    title: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    alarm_id: (
        Annotated[
            str,
            msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$"),
        ]
        | None
    ) = None


class NewMember(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    # User ids are PostgreSQL bigint.
    user_id: Annotated[int, msgspec.Meta(ge=1, le=2**62)]


def _audit(
    services: Services,
    principal: Principal,
    action: str,
    patient_id: str | None = None,
    executor: asyncpg.Pool | asyncpg.Connection | None = None,
    **detail: object,
) -> Any:
    return services.audit.record(
        executor or services.pool,
        Actor.user(principal.user_id),
        action,
        patient_id=patient_id,
        detail=detail,
    )


async def create_thread(request: Request) -> JSONResponse:
    """Open a thread about a patient (and optionally an alarm); the caller joins it.
    ---
    summary: Open a chat thread about a patient
    tags: [chat]
    security: [{bearerAuth: []}]
    requestBody:
      required: true
      content:
        application/json:
          schema: {$ref: "#/components/schemas/NewThread"}
    responses:
      "201": {description: The new thread}
      "400": {$ref: "#/components/responses/BadRequest"}
      "401": {$ref: "#/components/responses/Unauthorized"}
      "403": {$ref: "#/components/responses/Forbidden"}
      "404": {$ref: "#/components/responses/NotFound"}
    """
    principal = await require_user(request)
    services = services_of(request)
    new = await read_json_body(request, NewThread, "thread")
    if "\x00" in new.title:
        raise ApiError(400, "title: must not contain U+0000")
    await authorize_read(services, principal, new.patient_id, "chat.thread.create")
    # Callers who may read every patient pass authorize_read for any id.
    if not await services.pool.fetchval(
        "SELECT EXISTS (SELECT 1 FROM patients WHERE id = $1)", new.patient_id
    ):
        raise ApiError(404, f"patient {new.patient_id} not found")
    if new.alarm_id is not None:
        await _check_alarm(services.pool, new.patient_id, new.alarm_id)
    thread_id = f"T-{uuid.uuid4().hex}"
    async with services.pool.acquire() as connection, connection.transaction():
        await connection.execute(
            """
            INSERT INTO chat_threads (id, patient_id, alarm_id, title, created_by)
            VALUES ($1, $2, $3, $4, $5)
            """,
            thread_id,
            new.patient_id,
            new.alarm_id,
            new.title,
            principal.user_id,
        )
        await connection.execute(
            """
            INSERT INTO chat_members (thread_id, user_id, added_by)
            VALUES ($1, $2, $2)
            """,
            thread_id,
            principal.user_id,
        )
        await _audit(
            services,
            principal,
            "chat.thread.create",
            new.patient_id,
            connection,
            thread_id=thread_id,
            alarm_id=new.alarm_id,
        )
    thread = await _load_thread(services.pool, thread_id)
    return JSONResponse(_thread_json(thread, is_member=True), status_code=201)


async def _check_alarm(pool: asyncpg.Pool, patient_id: str, alarm_id: str) -> None:
    found = await pool.fetchval(
        "SELECT EXISTS (SELECT 1 FROM alarms WHERE patient_id = $1 AND alarm_id = $2)",
        patient_id,
        alarm_id,
    )
    if not found:
        raise ApiError(404, f"no alarm {alarm_id!r} for patient {patient_id}")


async def _load_thread(pool: asyncpg.Pool, thread_id: str) -> asyncpg.Record:
    # A malformed id cannot exist, and U+0000 in it would fail the query.
    if _THREAD_ID.match(thread_id) is None:
        raise ApiError(404, f"no chat thread {thread_id[:64]!r}")
    row = await pool.fetchrow("SELECT * FROM chat_threads WHERE id = $1", thread_id)
    if row is None:
        raise ApiError(404, f"no chat thread {thread_id[:64]!r}")
    return row


def _thread_json(row: asyncpg.Record, *, is_member: bool) -> dict[str, object]:
    return {
        "id": row["id"],
        "patient_id": row["patient_id"],
        "alarm_id": row["alarm_id"],
        "title": row["title"],
        "created_by": str(row["created_by"]),
        "created_at": row["created_at"].isoformat(),
        "member": is_member,
    }


async def _readable_thread(
    services: Services, principal: Principal, thread_id: str, action: str
) -> asyncpg.Record:
    """Load a thread; raise 404 if unknown, 403 (audited) without patient consent."""
    thread = await _load_thread(services.pool, thread_id)
    await authorize_read(services, principal, thread["patient_id"], action)
    return thread


async def _require_member(
    services: Services, principal: Principal, thread: asyncpg.Record, action: str
) -> None:
    member = await services.pool.fetchval(
        """
        SELECT EXISTS (
            SELECT 1 FROM chat_members WHERE thread_id = $1 AND user_id = $2
        )
        """,
        thread["id"],
        principal.user_id,
    )
    if not member:
        services.counters.increment("chat.rejected")
        logger.warning(
            "rejected %s by user %s: not a member of chat thread %s",
            action,
            principal.user_id,
            thread["id"],
        )
        raise ApiError(
            403,
            f"you are not a member of chat thread {thread['id']}; join it first",
            thread_id=thread["id"],
        )


async def list_threads(request: Request) -> JSONResponse:
    """List the threads about a patient the caller may read, newest first.
    ---
    summary: List the chat threads about a patient
    tags: [chat]
    security: [{bearerAuth: []}]
    parameters:
      - name: patient_id
        in: query
        required: true
        schema: {type: string, pattern: "^[A-Za-z0-9._:-]{1,64}$"}
        example: P-0001
    responses:
      "200": {description: Threads newest first}
      "400": {$ref: "#/components/responses/BadRequest"}
      "401": {$ref: "#/components/responses/Unauthorized"}
      "403": {$ref: "#/components/responses/Forbidden"}
      "404": {$ref: "#/components/responses/NotFound"}
    """
    principal = await require_user(request)
    services = services_of(request)
    patient_id = request.query_params.get("patient_id")
    if patient_id is None or not _IDENTIFIER.match(patient_id):
        raise ApiError(400, "patient_id: missing or malformed query parameter")
    await authorize_read(services, principal, patient_id, "chat.threads.read")
    rows = await services.pool.fetch(
        """
        SELECT t.*, EXISTS (
            SELECT 1 FROM chat_members m WHERE m.thread_id = t.id AND m.user_id = $2
        ) AS is_member
        FROM chat_threads t WHERE t.patient_id = $1
        ORDER BY t.created_at DESC, t.id
        """,
        patient_id,
        principal.user_id,
    )
    await _audit(services, principal, "chat.threads.read", patient_id)
    threads = [_thread_json(row, is_member=row["is_member"]) for row in rows]
    return JSONResponse({"patient_id": patient_id, "threads": threads})


async def get_thread(request: Request) -> JSONResponse:
    """Return a thread with the current keys of the members who may read its patient.
    ---
    summary: One chat thread with its members and their keys
    tags: [chat]
    security: [{bearerAuth: []}]
    parameters:
      - {$ref: "#/components/parameters/ThreadId"}
    responses:
      "200": {description: The thread}
      "401": {$ref: "#/components/responses/Unauthorized"}
      "403": {$ref: "#/components/responses/Forbidden"}
      "404": {$ref: "#/components/responses/NotFound"}
    """
    principal = await require_user(request)
    services = services_of(request)
    thread = await _readable_thread(
        services, principal, request.path_params["thread_id"], "chat.thread.read"
    )
    members = await _members(services.pool, thread)
    is_member = any(member["user_id"] == str(principal.user_id) for member in members)
    await _audit(
        services,
        principal,
        "chat.thread.read",
        thread["patient_id"],
        thread_id=thread["id"],
    )
    return JSONResponse(
        {**_thread_json(thread, is_member=is_member), "members": members}
    )


async def _members(
    pool: asyncpg.Pool, thread: asyncpg.Record
) -> list[dict[str, object]]:
    rows = await pool.fetch(
        """
        SELECT m.user_id, u.display_name, m.joined_at, k.key_id, k.ecdh_public,
               k.signing_public, k.created_at, k.superseded_at
        FROM chat_members m
        JOIN users u ON u.id = m.user_id
        LEFT JOIN chat_keys k ON k.user_id = m.user_id AND k.superseded_at IS NULL
        WHERE m.thread_id = $1
        ORDER BY m.user_id
        """,
        thread["id"],
    )
    members = []
    for row in rows:
        principal = await load_principal(pool, row["user_id"])
        consented = principal is not None and await may_read(
            pool, principal, thread["patient_id"]
        )
        members.append(
            {
                "user_id": str(row["user_id"]),
                "display_name": row["display_name"],
                "joined_at": row["joined_at"].isoformat(),
                "may_read_patient": consented,
                # Without consent no key is listed, so no sender encrypts for them.
                "key": key_json(row) if consented and row["key_id"] else None,
            }
        )
    return members


async def add_member(request: Request) -> JSONResponse:
    """Add a clinician who may read the patient; a caller may always add themselves.
    ---
    summary: Add a clinician to a chat thread
    tags: [chat]
    security: [{bearerAuth: []}]
    parameters:
      - {$ref: "#/components/parameters/ThreadId"}
    requestBody:
      required: true
      content:
        application/json:
          schema: {$ref: "#/components/schemas/NewMember"}
    responses:
      "200": {description: The thread members}
      "400": {$ref: "#/components/responses/BadRequest"}
      "401": {$ref: "#/components/responses/Unauthorized"}
      "403": {$ref: "#/components/responses/Forbidden"}
      "404": {$ref: "#/components/responses/NotFound"}
      "409": {$ref: "#/components/responses/Conflict"}
    """
    principal = await require_user(request)
    services = services_of(request)
    thread = await _readable_thread(
        services, principal, request.path_params["thread_id"], "chat.member.add"
    )
    new = await read_json_body(request, NewMember, "member")
    if new.user_id != principal.user_id:
        await _require_member(services, principal, thread, "chat.member.add")
    target = await load_principal(services.pool, new.user_id)
    if target is None or not await may_read(
        services.pool, target, thread["patient_id"]
    ):
        services.counters.increment("consent.refused")
        await _audit(
            services,
            principal,
            "chat.member.add",
            thread["patient_id"],
            thread_id=thread["id"],
            user_id=new.user_id,
            refused="no current assignment",
        )
        logger.warning(
            "rejected adding user %s to chat thread %s: may not read patient %s",
            new.user_id,
            thread["id"],
            thread["patient_id"],
        )
        raise ApiError(
            403,
            f"user {new.user_id} may not read patient {thread['patient_id']}, so "
            "cannot join its chat threads",
            user_id=new.user_id,
        )
    await services.pool.execute(
        """
        INSERT INTO chat_members (thread_id, user_id, added_by) VALUES ($1, $2, $3)
        ON CONFLICT DO NOTHING
        """,
        thread["id"],
        new.user_id,
        principal.user_id,
    )
    await _audit(
        services,
        principal,
        "chat.member.add",
        thread["patient_id"],
        thread_id=thread["id"],
        user_id=new.user_id,
    )
    return JSONResponse({"thread_id": thread["id"], "user_id": str(new.user_id)})


async def post_message(request: Request) -> JSONResponse:
    """Store a sealed envelope from a member and relay it to the patient's clients.
    ---
    summary: Post a sealed message to a chat thread
    tags: [chat]
    security: [{bearerAuth: []}]
    parameters:
      - {$ref: "#/components/parameters/ThreadId"}
    requestBody:
      required: true
      content:
        application/json:
          schema: {$ref: "#/components/schemas/ChatEnvelope"}
    responses:
      "201": {description: The stored message id}
      "400": {$ref: "#/components/responses/BadRequest"}
      "401": {$ref: "#/components/responses/Unauthorized"}
      "403": {$ref: "#/components/responses/Forbidden"}
      "404": {$ref: "#/components/responses/NotFound"}
      "409": {$ref: "#/components/responses/Conflict"}
    """
    principal = await require_user(request)
    services = services_of(request)
    thread = await _readable_thread(
        services, principal, request.path_params["thread_id"], "chat.message.post"
    )
    await _require_member(services, principal, thread, "chat.message.post")
    try:
        envelope = await read_json_body(request, ChatEnvelope, "chat envelope")
        _check_envelope(envelope)
        await _check_envelope_parties(services.pool, principal, thread, envelope)
        async with services.pool.acquire() as connection, connection.transaction():
            row_id = await _store(connection, principal, envelope)
            await _audit(
                services,
                principal,
                "chat.message.post",
                thread["patient_id"],
                connection,
                thread_id=thread["id"],
                message_id=envelope.message_id,
                recipients=len(envelope.recipients),
            )
    except ApiError as exc:
        services.counters.increment("chat.rejected")
        logger.warning(
            "rejected chat message from user %s in thread %s: %s",
            principal.user_id,
            thread["id"],
            exc.message,
        )
        raise

    event = ChatMessageEvent(
        patient_id=thread["patient_id"],
        thread_id=thread["id"],
        id=row_id,
        envelope=envelope,
    )
    # NOTE: every client subscribed to the patient receives the event, members of
    # the thread or not; non-members can see only the envelope's metadata.
    services.hub.publish(thread["patient_id"], encode(event).decode(), droppable=False)
    return JSONResponse(
        {"id": row_id, "message_id": envelope.message_id}, status_code=201
    )


def _check_envelope(envelope: ChatEnvelope) -> None:
    try:
        check_envelope(envelope)
    except ProtocolError as exc:
        raise ApiError(400, f"invalid chat envelope: {exc}") from None


async def _check_envelope_parties(
    pool: asyncpg.Pool,
    principal: Principal,
    thread: asyncpg.Record,
    envelope: ChatEnvelope,
) -> None:
    if envelope.thread_id != thread["id"]:
        raise ApiError(400, f"thread_id: envelope is for thread {envelope.thread_id}")
    if envelope.sender_id != str(principal.user_id):
        raise ApiError(400, "sender_id: must be the id of the logged-in user")
    current = await pool.fetchval(
        "SELECT key_id FROM chat_keys WHERE user_id = $1 AND superseded_at IS NULL",
        principal.user_id,
    )
    if envelope.sender_key_id != current:
        raise ApiError(
            400,
            "sender_key_id: not your current chat key; publish it at PUT /chat/keys",
        )
    members = {
        member["user_id"]
        for member in await _members(pool, thread)
        if member["key"] is not None
    }
    for index, recipient in enumerate(envelope.recipients):
        if recipient.user_id not in members:
            raise ApiError(
                400,
                f"recipients[{index}]: user {recipient.user_id} is not a member of "
                "this thread who may read its patient",
            )


async def _store(
    connection: asyncpg.Connection, principal: Principal, envelope: ChatEnvelope
) -> int:
    try:
        row_id: int = await connection.fetchval(
            """
            INSERT INTO chat_messages
                (message_id, thread_id, sender_id, sender_key_id, counter, envelope)
            VALUES ($1, $2, $3, $4, $5, $6)
            RETURNING id
            """,
            uuid.UUID(envelope.message_id),
            envelope.thread_id,
            principal.user_id,
            envelope.sender_key_id,
            envelope.counter,
            msgspec.to_builtins(envelope),
        )
    except asyncpg.UniqueViolationError:
        raise ApiError(
            409,
            f"message {envelope.message_id} or counter {envelope.counter} of key "
            f"{envelope.sender_key_id} was stored before; a replay is not stored again",
        ) from None
    return row_id


async def list_messages(request: Request) -> JSONResponse:
    """Return a member's page of envelopes after ``after_id``, oldest first.
    ---
    summary: Sealed messages of a chat thread, oldest first
    tags: [chat]
    security: [{bearerAuth: []}]
    parameters:
      - {$ref: "#/components/parameters/ThreadId"}
      - name: after_id
        in: query
        schema: {type: integer, minimum: 0, default: 0}
        description: Return messages after this row id
      - name: limit
        in: query
        schema: {type: integer, minimum: 1, maximum: 1000, default: 200}
    responses:
      "200": {description: Envelopes with their row ids}
      "400": {$ref: "#/components/responses/BadRequest"}
      "401": {$ref: "#/components/responses/Unauthorized"}
      "403": {$ref: "#/components/responses/Forbidden"}
      "404": {$ref: "#/components/responses/NotFound"}
    """
    principal = await require_user(request)
    services = services_of(request)
    thread = await _readable_thread(
        services, principal, request.path_params["thread_id"], "chat.messages.read"
    )
    await _require_member(services, principal, thread, "chat.messages.read")
    after_id = parse_int("after_id", request.query_params.get("after_id"), 0, 0, 2**62)
    limit = parse_int(
        "limit", request.query_params.get("limit"), DEFAULT_PAGE, 1, MAX_PAGE
    )
    rows = await services.pool.fetch(
        """
        SELECT id, received_at, envelope FROM chat_messages
        WHERE thread_id = $1 AND id > $2 ORDER BY id LIMIT $3
        """,
        thread["id"],
        after_id,
        limit,
    )
    await _audit(
        services,
        principal,
        "chat.messages.read",
        thread["patient_id"],
        thread_id=thread["id"],
        messages=len(rows),
    )
    messages = [
        {
            "id": row["id"],
            "received_at": row["received_at"].isoformat(),
            "envelope": row["envelope"],
        }
        for row in rows
    ]
    return JSONResponse({"thread_id": thread["id"], "messages": messages})


routes = [
    Route("/chat/threads", create_thread, methods=["POST"]),
    Route("/chat/threads", list_threads, methods=["GET"]),
    Route("/chat/threads/{thread_id}", get_thread, methods=["GET"]),
    Route("/chat/threads/{thread_id}/members", add_member, methods=["POST"]),
    Route("/chat/threads/{thread_id}/messages", post_message, methods=["POST"]),
    Route("/chat/threads/{thread_id}/messages", list_messages, methods=["GET"]),
]
