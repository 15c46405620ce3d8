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
