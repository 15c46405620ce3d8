"""Encrypted chat: keys, consent on threads, sealed envelopes, tamper and replay."""

from __future__ import annotations

import httpx
import msgspec
import pytest
from central_testkit import (
    PASSWORD,
    Demo,
    LiveServer,
    bearer,
    connect_events,
    receive_json,
)

from central.auth import ROLE_NURSE, issue_token
from central.chat_client import ChatClient, ChatIdentity, ChatRejected, RecipientKey
from central.services import Services
from central.users import ensure_assignment, upsert_user
from protocol.chat import ChatEnvelope
from protocol.messages import ChatMessageEvent, decode_server_event

pytestmark = pytest.mark.timeout(60)

SECRET_TEXT = "Bed 1 potassium 6.8, please review"


@pytest.fixture
async def cara(services: Services, demo: Demo) -> tuple[int, str]:
    """A second nurse assigned to the demo patient."""
    user_id = await upsert_user(
        services.pool, "nurse.cara", "Cara", PASSWORD, [ROLE_NURSE]
    )
    await ensure_assignment(services.pool, user_id, demo.patient_id)
    return user_id, issue_token(services.settings.jwt_secret, user_id, 900)


def chat_client(client: httpx.AsyncClient, token: str, user_id: int) -> ChatClient:
    http = httpx.AsyncClient(
        transport=client._transport, base_url=client.base_url, headers=bearer(token)
    )
    return ChatClient(http, ChatIdentity.generate(user_id))


async def shared_thread(
    client: httpx.AsyncClient, demo: Demo, cara: tuple[int, str]
) -> tuple[ChatClient, ChatClient, str]:
    ana = chat_client(client, demo.ana_token, demo.ana_id)
    other = chat_client(client, cara[1], cara[0])
    await ana.publish_keys()
    await other.publish_keys()
    thread = await ana.create_thread(demo.patient_id, "Potassium")
    await ana.add_member(thread["id"], cara[0])
    return ana, other, str(thread["id"])


async def test_message_sealed_and_read_by_member(
    client: httpx.AsyncClient, demo: Demo, cara: tuple[int, str], services: Services
) -> None:
    ana, other, thread_id = await shared_thread(client, demo, cara)
    await ana.send(thread_id, SECRET_TEXT)

    opened = await other.read(thread_id)
    assert [text for _, text in opened] == [SECRET_TEXT]
    mine = await ana.read(thread_id)
    assert [text for _, text in mine] == [SECRET_TEXT]

    stored = await services.pool.fetch("SELECT envelope::text AS e FROM chat_messages")
    assert len(stored) == 1
    assert "potassium" not in stored[0]["e"].lower()


async def test_tampered_envelope_rejected(
    client: httpx.AsyncClient, demo: Demo, cara: tuple[int, str]
) -> None:
    ana, other, thread_id = await shared_thread(client, demo, cara)
    envelope = await ana.send(thread_id, SECRET_TEXT)
    sender = await other.sender_key(envelope.sender_key_id)

    flipped = bytearray(msgspec.json.encode(envelope))
    ciphertext_at = flipped.index(envelope.ciphertext.encode()) + 10
    flipped[ciphertext_at] = (
        ord("A") if flipped[ciphertext_at] != ord("A") else ord("B")
    )
    tampered = msgspec.json.decode(bytes(flipped), type=ChatEnvelope)
    with pytest.raises(ChatRejected, match="signature"):
        other.identity.open(tampered, sender, thread_id)

    moved = msgspec.structs.replace(envelope, thread_id="T-" + "0" * 32)
    with pytest.raises(ChatRejected, match="thread"):
        other.identity.open(moved, sender, thread_id)


async def test_replayed_envelope_rejected(
    client: httpx.AsyncClient, demo: Demo, cara: tuple[int, str]
) -> None:
    ana, other, thread_id = await shared_thread(client, demo, cara)
    envelope = await ana.send(thread_id, SECRET_TEXT)
    sender = await other.sender_key(envelope.sender_key_id)
    assert other.identity.open(envelope, sender, thread_id) == SECRET_TEXT
    with pytest.raises(ChatRejected, match="replayed"):
        other.identity.open(envelope, sender, thread_id)

    response = await ana.http.post(
        f"/chat/threads/{thread_id}/messages", content=msgspec.json.encode(envelope)
    )
    assert response.status_code == 409


async def test_forged_sender_key_rejected(
    client: httpx.AsyncClient, demo: Demo, cara: tuple[int, str]
) -> None:
    ana, other, thread_id = await shared_thread(client, demo, cara)
    envelope = await ana.send(thread_id, SECRET_TEXT)
    impostor = ChatIdentity.generate(demo.ana_id)
    forged_key = RecipientKey(
        str(demo.ana_id),
        envelope.sender_key_id,
        impostor.ecdh_public,
        impostor.signing_public,
    )
    with pytest.raises(ChatRejected, match="signature"):
        other.identity.open(envelope, forged_key, thread_id)


async def test_unassigned_nurse_cannot_join_or_read(
    client: httpx.AsyncClient, demo: Demo, cara: tuple[int, str]
) -> None:
    ana, _, thread_id = await shared_thread(client, demo, cara)
    response = await ana.http.post(
        f"/chat/threads/{thread_id}/members", json={"user_id": demo.ben_id}
    )
    assert response.status_code == 403
    assert str(demo.ben_id) in response.json()["error"]

    ben = chat_client(client, demo.ben_token, demo.ben_id)
    for method, path in (
        ("GET", f"/chat/threads/{thread_id}"),
        ("GET", f"/chat/threads/{thread_id}/messages"),
        ("GET", f"/chat/threads?patient_id={demo.patient_id}"),
    ):
        response = await ben.http.request(method, path)
        assert response.status_code == 403, path
    response = await ben.http.post(
        f"/chat/threads/{thread_id}/members", json={"user_id": demo.ben_id}
    )
    assert response.status_code == 403
    response = await ben.http.post(
        "/chat/threads", json={"patient_id": demo.patient_id, "title": "Bed 1"}
    )
    assert response.status_code == 403


async def test_ended_assignment_drops_member_key(
    client: httpx.AsyncClient, demo: Demo, cara: tuple[int, str], services: Services
) -> None:
    ana, other, thread_id = await shared_thread(client, demo, cara)
    await services.pool.execute(
        "UPDATE assignments SET ends_at = now() WHERE user_id = $1", cara[0]
    )

    thread = (await ana.http.get(f"/chat/threads/{thread_id}")).json()
    former = next(m for m in thread["members"] if m["user_id"] == str(cara[0]))
    assert former["may_read_patient"] is False
    assert former["key"] is None
    envelope = await ana.send(thread_id, SECRET_TEXT)
    assert [r.user_id for r in envelope.recipients] == [str(demo.ana_id)]
    response = await other.http.get(f"/chat/threads/{thread_id}/messages")
    assert response.status_code == 403


async def test_recipient_outside_thread_rejected(
    client: httpx.AsyncClient, demo: Demo, cara: tuple[int, str]
) -> None:
    ana = chat_client(client, demo.ana_token, demo.ana_id)
    other = chat_client(client, cara[1], cara[0])
    await ana.publish_keys()
    await other.publish_keys()
    thread = await ana.create_thread(demo.patient_id, "Not shared yet")
    keys = [
        RecipientKey(
            str(demo.ana_id),
            ana.identity.key_id,
            ana.identity.ecdh_public,
            ana.identity.signing_public,
        ),
        RecipientKey(
            str(cara[0]),
            other.identity.key_id,
            other.identity.ecdh_public,
            other.identity.signing_public,
        ),
    ]
    envelope = ana.identity.seal(str(thread["id"]), SECRET_TEXT, keys)
    response = await ana.http.post(
        f"/chat/threads/{thread['id']}/messages", content=msgspec.json.encode(envelope)
    )
    assert response.status_code == 400
    assert "recipients[1]" in response.json()["error"]


async def test_chat_message_relayed_over_events(
    client: httpx.AsyncClient,
    demo: Demo,
    cara: tuple[int, str],
    live_server: LiveServer,
) -> None:
    ana, other, thread_id = await shared_thread(client, demo, cara)
    async with connect_events(live_server, cara[1]) as socket:
        await socket.send(
            f'{{"type":"subscribe","v":1,"patient_id":"{demo.patient_id}"}}'
        )
        assert (await receive_json(socket))["type"] == "subscribed"
        await ana.send(thread_id, SECRET_TEXT)
        event = await receive_json(socket)
    assert event["type"] == "chat.message"
    assert isinstance(decode_server_event(msgspec.json.encode(event)), ChatMessageEvent)
    envelope = msgspec.convert(event["envelope"], ChatEnvelope)
    sender = await other.sender_key(envelope.sender_key_id)
    assert other.identity.open(envelope, sender, thread_id) == SECRET_TEXT


async def test_bad_public_key_rejected(client: httpx.AsyncClient, demo: Demo) -> None:
    response = await client.put(
        "/chat/keys",
        headers=bearer(demo.ana_token),
        json={"ecdh_public": "BAAA" * 20, "signing_public": "BAAA" * 20},
    )
    assert response.status_code == 400
    assert "ecdh_public" in response.json()["error"]


async def test_identity_saved_and_loaded(tmp_path) -> None:  # type: ignore[no-untyped-def]
    identity = ChatIdentity.generate(7)
    path = tmp_path / "chat-key.pem"
    identity.save(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert ChatIdentity.load(7, path).key_id == identity.key_id


async def test_thread_tied_to_unknown_alarm_rejected(
    client: httpx.AsyncClient, demo: Demo
) -> None:
    response = await client.post(
        "/chat/threads",
        headers=bearer(demo.ana_token),
        json={
            "patient_id": demo.patient_id,
            "title": "VT",
            "alarm_id": "no-such-alarm",
        },
    )
    assert response.status_code == 404
    assert "no-such-alarm" in response.json()["error"]


async def test_thread_for_unknown_patient_not_found(
    client: httpx.AsyncClient, services: Services
) -> None:
    # An administrator passes the read check for any patient id, so the id itself
    # must be checked before the thread is stored.
    admin_id = await upsert_user(services.pool, "admin.ida", "Ida", PASSWORD, ["admin"])
    token = issue_token(services.settings.jwt_secret, admin_id, 900)
    response = await client.post(
        "/chat/threads",
        headers=bearer(token),
        json={"patient_id": "P-9999", "title": "Handover"},
    )
    assert response.status_code == 404
    assert "P-9999" in response.json()["error"]


async def test_thread_title_with_nul_rejected(
    client: httpx.AsyncClient, demo: Demo
) -> None:
    response = await client.post(
        "/chat/threads",
        headers=bearer(demo.ana_token),
        json={"patient_id": demo.patient_id, "title": "K\u0000"},
    )
    assert response.status_code == 400
    assert "title" in response.json()["error"]
