"""Python side of the encrypted chat: key pairs, sealing and opening envelopes.

The private keys stay in this process, or in a file the caller chooses. Central
only ever receives public keys and envelopes. ``ChatIdentity`` seals a text for a list
of recipient keys and opens envelopes addressed to it, rejecting a forged, altered
or replayed one with ``ChatRejected``. ``ChatClient`` talks to central's /chat
routes with httpx. The format is in ``protocol.chat`` and ``docs/chat.md``.
"""

from __future__ import annotations

import base64
import os
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import msgspec
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from protocol.chat import (
    ChatEnvelope,
    WrappedKey,
    check_envelope,
    header_bytes,
    key_id,
    signed_bytes,
    wrap_info,
)
from protocol.errors import ProtocolError

CURVE = ec.SECP256R1()
AES_KEY_BYTES = 32
GCM_NONCE_BYTES = 12
SCALAR_BYTES = 32  # one coordinate of a P-256 signature (r or s)


class ChatRejected(Exception):
    """An envelope failed a check and its text must not be shown."""

    def __init__(self, message_id: str, problem: str) -> None:
        super().__init__(f"chat message {message_id} rejected: {problem}")
        self.message_id = message_id
        self.problem = problem


@dataclass(frozen=True)
class RecipientKey:
    """A published key pair of one user, as central lists it."""

    user_id: str
    key_id: str
    ecdh_public: bytes
    signing_public: bytes

    @classmethod
    def from_json(cls, data: dict[str, object]) -> RecipientKey:
        ecdh = _b64decode(str(data["ecdh_public"]))
        signing = _b64decode(str(data["signing_public"]))
        stated = str(data["key_id"])
        # The id is a hash of the keys, so a server cannot pair an id with other keys.
        if key_id(ecdh, signing) != stated:
            raise ValueError(f"key id {stated} does not match its public keys")
        return cls(str(data["user_id"]), stated, ecdh, signing)


@dataclass
class ChatIdentity:
    """One user's chat key pairs and the state that detects replays."""

    user_id: str
    ecdh_private: ec.EllipticCurvePrivateKey
    signing_private: ec.EllipticCurvePrivateKey
    counter: int = 0
    seen_message_ids: set[str] = field(default_factory=set)
    seen_counters: set[tuple[str, int]] = field(default_factory=set)

    @classmethod
    def generate(cls, user_id: int | str) -> ChatIdentity:
        return cls(
            str(user_id), ec.generate_private_key(CURVE), ec.generate_private_key(CURVE)
        )

    @property
    def ecdh_public(self) -> bytes:
        return _point(self.ecdh_private.public_key())

    @property
    def signing_public(self) -> bytes:
        return _point(self.signing_private.public_key())

    @property
    def key_id(self) -> str:
        return key_id(self.ecdh_public, self.signing_public)

    def public_keys_json(self) -> dict[str, str]:
        return {
            "ecdh_public": _b64encode(self.ecdh_public),
            "signing_public": _b64encode(self.signing_public),
        }

    def save(self, path: Path) -> None:
        """Write both private keys as PKCS #8 PEM, readable by the owner only."""
        pem = b"".join(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            for key in (self.ecdh_private, self.signing_private)
        )
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "wb") as file:
            file.write(pem)

    @classmethod
    def load(cls, user_id: int | str, path: Path) -> ChatIdentity:
        text = path.read_bytes()
        marker = b"-----END PRIVATE KEY-----"
        first, second = (part + marker for part in text.split(marker)[:2])
        keys = [
            serialization.load_pem_private_key(pem, None) for pem in (first, second)
        ]
        for key in keys:
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise ValueError(f"{path} does not contain two EC private keys")
        return cls(str(user_id), keys[0], keys[1])  # type: ignore[arg-type]

    def seal(
        self, thread_id: str, text: str, recipients: list[RecipientKey]
    ) -> ChatEnvelope:
        """Encrypt ``text`` for every recipient key and sign the envelope."""
        # The clock is a floor so that a key loaded again from a file, which does
        # not store the counter, does not repeat a counter it used before.
        self.counter = max(self.counter + 1, time.time_ns() // 1_000_000)
        ephemeral = ec.generate_private_key(CURVE)
        envelope = ChatEnvelope(
            message_id=str(uuid.uuid4()),
            thread_id=thread_id,
            sender_id=self.user_id,
            sender_key_id=self.key_id,
            counter=self.counter,
            sent_at=_now_iso(),
            ephemeral_key=_b64encode(_point(ephemeral.public_key())),
            # The body, the wrapped keys and the signature are filled in below,
            # because each of them depends on the header fields above.
            nonce="",
            ciphertext="",
            recipients=[],
            signature="",
        )
        header = header_bytes(envelope)

        content_key = AESGCM.generate_key(bit_length=AES_KEY_BYTES * 8)
        nonce = os.urandom(GCM_NONCE_BYTES)
        envelope.nonce = _b64encode(nonce)
        envelope.ciphertext = _b64encode(
            AESGCM(content_key).encrypt(nonce, text.encode("utf-8"), header)
        )

        ordered = sorted(recipients, key=lambda key: (key.user_id, key.key_id))
        envelope.recipients = [
            _wrap(ephemeral, envelope.message_id, header, content_key, recipient)
            for recipient in ordered
        ]

        der = self.signing_private.sign(
            signed_bytes(envelope), ec.ECDSA(hashes.SHA256())
        )
        envelope.signature = _b64encode(_der_to_raw(der))
        return envelope

    def open(self, envelope: ChatEnvelope, sender: RecipientKey, thread_id: str) -> str:
        """Verify and decrypt an envelope from ``sender``; return its text."""
        message_id = envelope.message_id
        try:
            check_envelope(envelope)
        except ProtocolError as exc:
            raise ChatRejected(message_id, str(exc)) from None
        if envelope.thread_id != thread_id:
            raise ChatRejected(message_id, f"addressed to thread {envelope.thread_id}")
        if (sender.user_id, sender.key_id) != (
            envelope.sender_id,
            envelope.sender_key_id,
        ):
            raise ChatRejected(message_id, "sender key does not match the envelope")
        _verify(envelope, sender)
        self._check_replay(envelope)
        text = self._decrypt(envelope)
        self.seen_message_ids.add(message_id)
        self.seen_counters.add((envelope.sender_key_id, envelope.counter))
        return text

    def _check_replay(self, envelope: ChatEnvelope) -> None:
        if envelope.message_id in self.seen_message_ids:
            raise ChatRejected(envelope.message_id, "replayed: message id seen before")
        if (envelope.sender_key_id, envelope.counter) in self.seen_counters:
            raise ChatRejected(
                envelope.message_id,
                f"replayed: counter {envelope.counter} of this sender key seen before",
            )

    def _decrypt(self, envelope: ChatEnvelope) -> str:
        mine = [
            entry
            for entry in envelope.recipients
            if (entry.user_id, entry.key_id) == (self.user_id, self.key_id)
        ]
        if not mine:
            raise ChatRejected(envelope.message_id, "not encrypted for this key")
        header = header_bytes(envelope)
        ephemeral = _public_key(_b64decode(envelope.ephemeral_key))
        shared = self.ecdh_private.exchange(ec.ECDH(), ephemeral)
        wrapping = _wrapping_key(shared, envelope.message_id, self.user_id, self.key_id)
        try:
            content_key = AESGCM(wrapping).decrypt(
                _b64decode(mine[0].nonce), _b64decode(mine[0].wrapped_key), header
            )
            plain = AESGCM(content_key).decrypt(
                _b64decode(envelope.nonce), _b64decode(envelope.ciphertext), header
            )
        except InvalidTag:
            raise ChatRejected(envelope.message_id, "decryption failed") from None
        return plain.decode("utf-8")


def _wrap(
    ephemeral: ec.EllipticCurvePrivateKey,
    message_id: str,
    header: bytes,
    content_key: bytes,
    recipient: RecipientKey,
) -> WrappedKey:
    shared = ephemeral.exchange(ec.ECDH(), _public_key(recipient.ecdh_public))
    wrapping = _wrapping_key(shared, message_id, recipient.user_id, recipient.key_id)
    nonce = os.urandom(GCM_NONCE_BYTES)
    return WrappedKey(
        user_id=recipient.user_id,
        key_id=recipient.key_id,
        nonce=_b64encode(nonce),
        wrapped_key=_b64encode(AESGCM(wrapping).encrypt(nonce, content_key, header)),
    )


def _wrapping_key(
    shared: bytes, message_id: str, user_id: str, key_ident: str
) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(),
        length=AES_KEY_BYTES,
        salt=message_id.encode("ascii"),
        info=wrap_info(user_id, key_ident),
    ).derive(shared)


def _verify(envelope: ChatEnvelope, sender: RecipientKey) -> None:
    raw = _b64decode(envelope.signature)
    if len(raw) != 2 * SCALAR_BYTES:
        raise ChatRejected(envelope.message_id, "signature is not 64 bytes")
    der = encode_dss_signature(
        int.from_bytes(raw[:SCALAR_BYTES], "big"),
        int.from_bytes(raw[SCALAR_BYTES:], "big"),
    )
    try:
        _public_key(sender.signing_public).verify(
            der, signed_bytes(envelope), ec.ECDSA(hashes.SHA256())
        )
    except InvalidSignature:
        raise ChatRejected(envelope.message_id, "signature does not verify") from None


def _der_to_raw(der: bytes) -> bytes:
    # WebCrypto signs and verifies ECDSA in the IEEE P1363 form r || s.
    r, s = decode_dss_signature(der)
    return r.to_bytes(SCALAR_BYTES, "big") + s.to_bytes(SCALAR_BYTES, "big")


def _point(public: ec.EllipticCurvePublicKey) -> bytes:
    return public.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )


def _public_key(point: bytes) -> ec.EllipticCurvePublicKey:
    return ec.EllipticCurvePublicKey.from_encoded_point(CURVE, point)


def _b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _b64decode(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def _now_iso() -> str:
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


class ChatClient:
    """A clinician's chat session with central: publish keys, send, fetch, open."""

    def __init__(self, http: httpx.AsyncClient, identity: ChatIdentity) -> None:
        self.http = http
        self.identity = identity
        self._keys: dict[str, RecipientKey] = {}

    async def publish_keys(self) -> dict[str, object]:
        response = await self.http.put(
            "/chat/keys", json=self.identity.public_keys_json()
        )
        response.raise_for_status()
        return response.json()

    async def create_thread(
        self, patient_id: str, title: str, alarm_id: str | None = None
    ) -> dict[str, object]:
        body = {"patient_id": patient_id, "title": title, "alarm_id": alarm_id}
        response = await self.http.post("/chat/threads", json=body)
        response.raise_for_status()
        return response.json()

    async def threads(self, patient_id: str) -> list[dict[str, object]]:
        response = await self.http.get(
            "/chat/threads", params={"patient_id": patient_id}
        )
        response.raise_for_status()
        return response.json()["threads"]

    async def add_member(self, thread_id: str, user_id: int | str) -> dict[str, object]:
        response = await self.http.post(
            f"/chat/threads/{thread_id}/members", json={"user_id": int(user_id)}
        )
        response.raise_for_status()
        return response.json()

    async def member_keys(self, thread_id: str) -> list[RecipientKey]:
        response = await self.http.get(f"/chat/threads/{thread_id}")
        response.raise_for_status()
        keys = [
            RecipientKey.from_json({**member["key"], "user_id": member["user_id"]})
            for member in response.json()["members"]
            if member.get("key")
        ]
        return keys

    async def send(self, thread_id: str, text: str) -> ChatEnvelope:
        envelope = self.identity.seal(
            thread_id, text, await self.member_keys(thread_id)
        )
        response = await self.http.post(
            f"/chat/threads/{thread_id}/messages",
            content=msgspec.json.encode(envelope),
            headers={"Content-Type": "application/json"},
        )
        response.raise_for_status()
        return envelope

    async def fetch(self, thread_id: str) -> list[ChatEnvelope]:
        response = await self.http.get(f"/chat/threads/{thread_id}/messages")
        response.raise_for_status()
        return [
            msgspec.convert(item["envelope"], ChatEnvelope)
            for item in response.json()["messages"]
        ]

    async def sender_key(self, key_ident: str) -> RecipientKey:
        if key_ident not in self._keys:
            response = await self.http.get(f"/chat/keys/{key_ident}")
            response.raise_for_status()
            self._keys[key_ident] = RecipientKey.from_json(response.json())
        return self._keys[key_ident]

    async def read(self, thread_id: str) -> list[tuple[ChatEnvelope, str]]:
        """Fetch the thread and open each envelope not seen before.

        Raises ChatRejected at the first envelope that fails a check.
        """
        opened = []
        for envelope in await self.fetch(thread_id):
            if envelope.message_id in self.identity.seen_message_ids:
                continue
            sender = await self.sender_key(envelope.sender_key_id)
            opened.append((envelope, self.identity.open(envelope, sender, thread_id)))
        return opened
