"""The end-to-end encrypted chat envelope: its fields, and the bytes it signs.

Central stores and relays envelopes but cannot read them: the text is encrypted with
AES-256-GCM under a random content key, and that key is wrapped for each recipient
with a key derived by ECDH (P-256) and HKDF-SHA-256. The sender signs the header,
the ciphertext and every wrapped key with ECDSA P-256. ``docs/chat.md`` describes
the scheme; the browser (``central/dashboard/chat-crypto.js``) and the Python
client (``central/chat_client.py``) both implement it.

Every field that enters the signed bytes is restricted to characters without spaces
or line breaks, so joining them with spaces and newlines is unambiguous.
"""

from __future__ import annotations

import hashlib
from typing import Annotated

import msgspec

from protocol.errors import ProtocolError

CHAT_VERSION = 1
SIGNED_PREFIX = "aura-chat/1"
KEY_ID_PREFIX = b"aura-chat-key/1"
# HKDF ``info`` of a recipient's wrapping key; the user id and key id follow.
WRAP_INFO_PREFIX = "aura-chat/1 wrap"
# An uncompressed P-256 point: 0x04, then x and y of 32 bytes each.
P256_POINT_BYTES = 65
KEY_ID_HEX_CHARS = 32
MAX_RECIPIENTS = 64
# Room for 4000 characters in any script (up to 4 UTF-8 bytes each), plus the
# 16-byte GCM tag, after base64.
MAX_CIPHERTEXT_B64 = 24_000

Base64 = Annotated[
    str,
    msgspec.Meta(
        min_length=4, max_length=MAX_CIPHERTEXT_B64, pattern=r"^[A-Za-z0-9+/]+={0,2}$"
    ),
]
KeyId = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{32}$")]
ThreadId = Annotated[str, msgspec.Meta(pattern=r"^T-[0-9a-f]{32}$")]
MessageId = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
    ),
]
UserId = Annotated[str, msgspec.Meta(pattern=r"^[0-9]{1,19}$")]
# Millisecond UTC time as JavaScript's Date.toISOString writes it.
SentAt = Annotated[
    str, msgspec.Meta(pattern=r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
]


class WrappedKey(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The content key of one message, encrypted for one recipient's key pair."""

    user_id: UserId
    key_id: KeyId
    nonce: Base64
    wrapped_key: Base64


class ChatEnvelope(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """One encrypted, signed chat message as the sender built it."""

    v: int = CHAT_VERSION
    message_id: MessageId
    thread_id: ThreadId
    sender_id: UserId
    sender_key_id: KeyId
    counter: Annotated[int, msgspec.Meta(ge=1, le=2**53 - 1)]
    sent_at: SentAt
    ephemeral_key: Base64
    nonce: Base64
    ciphertext: Base64
    recipients: Annotated[
        list[WrappedKey], msgspec.Meta(min_length=1, max_length=MAX_RECIPIENTS)
    ]
    signature: Base64


class PublicKeys(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A user's published chat key pair: raw uncompressed P-256 points in base64."""

    ecdh_public: Base64
    signing_public: Base64


def key_id(ecdh_public: bytes, signing_public: bytes) -> str:
    """Return the id of a key pair: the first 16 bytes of SHA-256, in hex."""
    digest = hashlib.sha256(KEY_ID_PREFIX + ecdh_public + signing_public).hexdigest()
    return digest[:KEY_ID_HEX_CHARS]


def header_bytes(envelope: ChatEnvelope) -> bytes:
    """Return the header: the associated data of every AES-GCM operation."""
    fields = [
        SIGNED_PREFIX,
        envelope.message_id,
        envelope.thread_id,
        envelope.sender_id,
        envelope.sender_key_id,
        str(envelope.counter),
        envelope.sent_at,
        envelope.ephemeral_key,
    ]
    return "\n".join(fields).encode("ascii")


def signed_bytes(envelope: ChatEnvelope) -> bytes:
    """Return what the sender signs: header, body and every wrapped key, in order."""
    lines = [
        header_bytes(envelope).decode("ascii"),
        envelope.nonce,
        envelope.ciphertext,
    ]
    for recipient in envelope.recipients:
        lines.append(
            " ".join(
                (
                    recipient.user_id,
                    recipient.key_id,
                    recipient.nonce,
                    recipient.wrapped_key,
                )
            )
        )
    return "\n".join(lines).encode("ascii")


def wrap_info(user_id: str, recipient_key_id: str) -> bytes:
    """Return the HKDF ``info`` that binds a wrapping key to one recipient key."""
    return f"{WRAP_INFO_PREFIX} {user_id} {recipient_key_id}".encode("ascii")


def check_envelope(envelope: ChatEnvelope) -> ChatEnvelope:
    """Apply the checks types cannot express; return the envelope."""
    if envelope.v != CHAT_VERSION:
        raise ProtocolError(
            "v", f"unsupported chat version {envelope.v}; expected {CHAT_VERSION}"
        )
    seen: set[tuple[str, str]] = set()
    for index, recipient in enumerate(envelope.recipients):
        pair = (recipient.user_id, recipient.key_id)
        if pair in seen:
            raise ProtocolError(
                f"recipients[{index}]",
                f"key {recipient.key_id} of user {recipient.user_id} is listed twice",
            )
        seen.add(pair)
    return envelope
