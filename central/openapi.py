"""The OpenAPI 3 description of central's REST routes, served at ``GET /openapi.json``.

Each endpoint keeps its own operation next to its code: the YAML after a ``---``
line in its docstring (starlette's ``SchemaGenerator`` reads it). Shared pieces
(errors, the bearer scheme, path parameters, request bodies) live in ``COMPONENTS``
below and are referenced with ``$ref``. ``undescribed_operations`` lists HTTP routes
without such YAML, and a test fails while that list is not empty. The WebSocket
routes (/ingest, /events) are outside OpenAPI; docs/messages.md describes them.
"""

from __future__ import annotations

import copy
from importlib import metadata
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route
from starlette.schemas import SchemaGenerator

_ERROR = {"$ref": "#/components/schemas/Error"}
_IDENTIFIER = {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,64}$"}
# Database ids are PostgreSQL bigint, so larger numbers are rejected with a 400.
_DATABASE_ID = {"type": "integer", "minimum": 1, "maximum": 2**62}
_BASE64 = {
    "type": "string",
    "minLength": 4,
    "maxLength": 24_000,
    "pattern": "^[A-Za-z0-9+/]+={0,2}$",
}
_CHAT_USER_ID = {"type": "string", "pattern": "^[0-9]{1,19}$"}
_CHAT_KEY_ID = {"type": "string", "pattern": "^[0-9a-f]{32}$"}
_TIME = {"type": "string", "format": "date-time"}


def _vital(minimum: float, maximum: float) -> dict[str, Any]:
    return {"type": "number", "minimum": minimum, "maximum": maximum}


def _package_version() -> str:
    try:
        return metadata.version("aura-one")
    except metadata.PackageNotFoundError:
        # Run from a source tree that was never installed.
        return "unknown"


def _error_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": _ERROR}},
    }


COMPONENTS: dict[str, Any] = {
    "securitySchemes": {
        "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    },
    "schemas": {
        "Error": {
            "type": "object",
            "required": ["status", "error"],
            "properties": {"status": {"type": "integer"}, "error": {"type": "string"}},
        },
        "Login": {
            "type": "object",
            "required": ["username", "password"],
            "additionalProperties": False,
            "properties": {
                "username": {"type": "string", "minLength": 1, "maxLength": 64},
                "password": {"type": "string", "minLength": 1, "maxLength": 1024},
            },
        },
        "RegisterDevice": {
            "type": "object",
            "required": ["device_id"],
            "additionalProperties": False,
            "properties": {
                "device_id": _IDENTIFIER,
                "serial_number": {
                    "type": "string",
                    "pattern": "^[A-Za-z0-9._:/-]{1,64}$",
                },
                "model": {"type": "string", "minLength": 1, "maxLength": 128},
                "firmware": {"type": "string", "minLength": 1, "maxLength": 128},
                "bed_id": _IDENTIFIER,
            },
        },
        "BindDevice": {
            "type": "object",
            "required": ["bed_id"],
            "additionalProperties": False,
            "properties": {"bed_id": _IDENTIFIER},
        },
        "Admission": {
            "type": "object",
            "required": ["patient_id", "bed_id"],
            "additionalProperties": False,
            "properties": {
                "patient_id": _IDENTIFIER,
                "bed_id": _IDENTIFIER,
                "display_name": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": 200,
                    "description": "Required when the patient is new",
                },
            },
        },
        "Transfer": {
            "type": "object",
            "required": ["bed_id"],
            "additionalProperties": False,
            "properties": {"bed_id": _IDENTIFIER},
        },
        "NewAssignment": {
            "type": "object",
            "description": "Exactly one of username or user_id, and exactly one of "
            "patient_id, bed_id or ward_id",
            "additionalProperties": False,
            "properties": {
                "username": {"type": "string"},
                "user_id": _DATABASE_ID,
                "patient_id": _IDENTIFIER,
                "bed_id": _IDENTIFIER,
                "ward_id": _IDENTIFIER,
                "starts_at": {**_TIME, "description": "Default now"},
                "ends_at": {
                    **_TIME,
                    "description": "Default 12 hours after starts_at, at most 30 days",
                },
            },
        },
        "Restrictions": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "allow": {
                    "type": "array",
                    "maxItems": 200,
                    "items": {"type": "string"},
                },
                "deny": {
                    "type": "array",
                    "maxItems": 200,
                    "items": {"type": "string"},
                },
            },
        },
        "BreakTheGlass": {
            "type": "object",
            "required": ["reason"],
            "additionalProperties": False,
            "properties": {"reason": {"type": "string", "maxLength": 1000}},
        },
        "GrantReview": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"note": {"type": "string", "maxLength": 1000}},
        },
        "Observation": {
            "type": "object",
            "description": "At least one value besides observed_at",
            "additionalProperties": False,
            "properties": {
                "observed_at": {**_TIME, "description": "Default now"},
                "on_oxygen": {"type": "boolean"},
                "consciousness": {"type": "string", "enum": ["A", "C", "V", "P", "U"]},
                "respiration_rate": _vital(0, 150),
                "spo2": _vital(0, 100),
                "systolic_bp": _vital(0, 400),
                "pulse": _vital(0, 350),
                "temperature": _vital(20, 46),
                "note": {"type": "string", "maxLength": 500},
            },
        },
        "AudioPause": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "seconds": {"type": "integer", "minimum": 1, "maximum": 300}
            },
        },
        "NewThread": {
            "type": "object",
            "required": ["patient_id", "title"],
            "additionalProperties": False,
            "properties": {
                "patient_id": _IDENTIFIER,
                "title": {"type": "string", "minLength": 1, "maxLength": 200},
                "alarm_id": _IDENTIFIER,
            },
        },
        "NewMember": {
            "type": "object",
            "required": ["user_id"],
            "additionalProperties": False,
            "properties": {"user_id": _DATABASE_ID},
        },
        "PublicKeys": {
            "type": "object",
            "required": ["ecdh_public", "signing_public"],
            "additionalProperties": False,
            "description": "Uncompressed P-256 points (65 bytes) in base64",
            "properties": {"ecdh_public": _BASE64, "signing_public": _BASE64},
        },
        "ChatEnvelope": {
            "type": "object",
            "description": "An encrypted, signed message; protocol/chat.py defines it",
            "required": [
                "message_id",
                "thread_id",
                "sender_id",
                "sender_key_id",
                "counter",
                "sent_at",
                "ephemeral_key",
                "nonce",
                "ciphertext",
                "recipients",
                "signature",
            ],
            "additionalProperties": False,
            "properties": {
                "v": {"type": "integer", "enum": [1]},
                "message_id": {"type": "string", "format": "uuid"},
                "thread_id": {"type": "string", "pattern": "^T-[0-9a-f]{32}$"},
                "sender_id": _CHAT_USER_ID,
                "sender_key_id": _CHAT_KEY_ID,
                "counter": {"type": "integer", "minimum": 1, "maximum": 2**53 - 1},
                "sent_at": {
                    "type": "string",
                    "pattern": "^\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.\\d{3}Z$",
                },
                "ephemeral_key": _BASE64,
                "nonce": _BASE64,
                "ciphertext": _BASE64,
                "recipients": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": 64,
                    "items": {
                        "type": "object",
                        "required": ["user_id", "key_id", "nonce", "wrapped_key"],
                        "additionalProperties": False,
                        "properties": {
                            "user_id": _CHAT_USER_ID,
                            "key_id": _CHAT_KEY_ID,
                            "nonce": _BASE64,
                            "wrapped_key": _BASE64,
                        },
                    },
                },
                "signature": _BASE64,
            },
        },
        "OperationOutcome": {
            "type": "object",
            "required": ["resourceType", "issue"],
            "properties": {
                "resourceType": {"type": "string", "enum": ["OperationOutcome"]},
                "issue": {"type": "array", "items": {"type": "object"}},
            },
        },
    },
    "parameters": {
        "PatientId": {
            "name": "patient_id",
            "in": "path",
            "required": True,
            "schema": {"type": "string"},
            "example": "P-0001",
        },
        "AlarmId": {
            "name": "alarm_id",
            "in": "path",
            "required": True,
            "schema": {"type": "string"},
            "example": "alarm-1",
        },
        "DeviceId": {
            "name": "device_id",
            "in": "path",
            "required": True,
            "schema": {"type": "string"},
            "example": "monitor-1",
        },
        "ThreadId": {
            "name": "thread_id",
            "in": "path",
            "required": True,
            "schema": {"type": "string"},
            "example": "T-00000000000000000000000000000000",
        },
        "From": {
            "name": "from",
            "in": "query",
            "description": "ISO 8601 time with offset; default a span before to; "
            "since is an alias",
            "schema": {"type": "string"},
        },
        "To": {
            "name": "to",
            "in": "query",
            "description": "ISO 8601 time with offset; default now; until is an alias",
            "schema": {"type": "string"},
        },
        "Since": {
            "name": "since",
            "in": "query",
            "description": "ISO 8601 time with offset; default one hour before until",
            "schema": {"type": "string"},
        },
        "Until": {
            "name": "until",
            "in": "query",
            "description": "ISO 8601 time with offset; default now",
            "schema": {"type": "string"},
        },
    },
    "responses": {
        "BadRequest": _error_response("The request is invalid; the error names why"),
        "Unauthorized": _error_response("Missing, invalid or expired bearer token"),
        "Forbidden": _error_response("The caller may not do this"),
        "NotFound": _error_response("No such resource"),
        "Conflict": _error_response("The request conflicts with the current state"),
        "FhirError": {
            "description": "An OperationOutcome naming what was wrong",
            "content": {
                "application/fhir+json": {
                    "schema": {"$ref": "#/components/schemas/OperationOutcome"}
                }
            },
        },
    },
}

BASE_DESCRIPTION: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {
        "title": "AURA ONE central",
        "version": _package_version(),
        "description": "Patient data, care, device registry and FHIR export. Every "
        "route except /health, /metrics, /openapi.json and /auth/login needs "
        "Authorization: Bearer <JWT> from POST /auth/login.",
    },
    "components": COMPONENTS,
}


def describe(routes: list[BaseRoute]) -> dict[str, Any]:
    """Return the OpenAPI description of the HTTP routes among ``routes``."""
    generator = SchemaGenerator(copy.deepcopy(BASE_DESCRIPTION))
    return generator.get_schema(routes)


def undescribed_operations(routes: list[BaseRoute]) -> list[str]:
    """Return ``METHOD path`` of each HTTP route whose docstring has no operation."""
    generator = SchemaGenerator(BASE_DESCRIPTION)
    missing = []
    for endpoint in generator.get_endpoints(routes):
        if not generator.parse_docstring(endpoint.func):
            missing.append(f"{endpoint.http_method.upper()} {endpoint.path}")
    return sorted(missing)


async def openapi_description(request: Request) -> JSONResponse:
    """Return this OpenAPI description.
    ---
    summary: The OpenAPI 3 description of every REST route
    tags: [meta]
    responses:
      "200": {description: This document}
    """
    return JSONResponse(describe(request.app.routes))


routes = [Route("/openapi.json", openapi_description, methods=["GET"])]
