"""REST routes of the device registry, for biomedical engineers and administrators.

Other roles get a 403, which is counted and audited. Every change is audited in the
registry's own transaction. Rotating a credential or retiring a device also closes
the device's open ingest connection on this instance, so the old credential stops
working at once and not only at the next reconnect.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from central.api import ApiError, api_error_handler
from central.audit import Actor
from central.auth import ROLE_ADMIN, ROLE_BIOMEDICAL_ENGINEER, Principal, require_user
from central.device_registry import (
    SERIAL_NUMBER_PATTERN,
    DeviceRegistry,
    RegistryError,
    get_device,
    list_devices,
)
from central.devices import DEVICE_ID_PATTERN
from central.json_body import decode_body
from central.services import Services, services_of

logger = logging.getLogger(__name__)

DEVICE_ROLES = frozenset({ROLE_BIOMEDICAL_ENGINEER, ROLE_ADMIN})
_IDENTIFIER = DEVICE_ID_PATTERN.pattern
Identifier = Annotated[str, msgspec.Meta(pattern=_IDENTIFIER)]
Description = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
SerialNumber = Annotated[str, msgspec.Meta(pattern=SERIAL_NUMBER_PATTERN.pattern)]


class RegisterDeviceRequest(msgspec.Struct, forbid_unknown_fields=True):
    device_id: Identifier
    serial_number: SerialNumber | None = None
    model: Description | None = None
    firmware: Description | None = None
    bed_id: Identifier | None = None


class BindRequest(msgspec.Struct, forbid_unknown_fields=True):
    bed_id: Identifier


async def _require_device_role(request: Request) -> tuple[Services, Principal]:
    principal = await require_user(request)
    services = services_of(request)
    if DEVICE_ROLES.intersection(principal.roles):
        return services, principal
    services.counters.increment("devices.refused")
    logger.warning(
        "rejected %s %s by user %s: not a biomedical engineer or administrator",
        request.method,
        request.url.path,
        principal.user_id,
    )
    await services.audit.record(
        services.pool,
        Actor.user(principal.user_id),
        "device.access",
        outcome="refused",
        detail={"method": request.method, "path": request.url.path},
    )
    raise ApiError(
        403,
        "the device registry is for biomedical engineers and administrators; "
        f"your roles are {list(principal.roles)}",
    )


def _device_id_of(request: Request) -> str:
    device_id: str = request.path_params["device_id"]
    if not DEVICE_ID_PATTERN.match(device_id):
        raise ApiError(404, f"no device with id {device_id[:64]!r}")
    return device_id


def _registry(services: Services, principal: Principal) -> DeviceRegistry:
    return DeviceRegistry(services.pool, services.audit, Actor.user(principal.user_id))


async def _device_body(services: Services, device_id: str) -> dict[str, Any]:
    body = await get_device(services.pool, device_id)
    # TODO: with several central instances this checks only this instance's ingest
    # connections; a shared presence record would show the whole picture.
    body["connected"] = services.device_links.get(device_id) is not None
    return body


async def _disconnect(services: Services, device_id: str, reason: str) -> None:
    # NOTE: a connection held by another central instance stays open until it
    # drops; the device is then refused when it reconnects.
    link = services.device_links.get(device_id)
    if link is not None:
        await link.disconnect(reason)


async def registry_error_handler(request: Request, exc: Exception) -> Response:
    """Send a registry error with its HTTP status, as an ``ApiError`` would be sent."""
    assert isinstance(exc, RegistryError)
    return await api_error_handler(request, ApiError(exc.status, str(exc)))


async def list_registered_devices(request: Request) -> JSONResponse:
    """List devices with their health.
    ---
    summary: List registered devices with health
    tags: [devices]
    security: [{bearerAuth: []}]
    parameters:
      - name: include_retired
        in: query
        schema: {type: boolean, default: false}
    responses:
      "200": {description: Devices ordered by id}
      "400": {$ref: "#/components/responses/BadRequest"}
      "401": {$ref: "#/components/responses/Unauthorized"}
      "403": {$ref: "#/components/responses/Forbidden"}
    """
    services, _ = await _require_device_role(request)
    flag = request.query_params.get("include_retired", "false")
    if flag not in ("true", "false"):
        raise ApiError(
            400, f"include_retired: expected true or false, got {flag[:20]!r}"
        )
    devices = await list_devices(services.pool, flag == "true")
    for device in devices:
        device["connected"] = services.device_links.get(device["id"]) is not None
    return JSONResponse({"devices": devices})


async def register_device(request: Request) -> JSONResponse:
    """Register a new device and return its secret, shown only this once.
    ---
    summary: Register a device; the response carries its secret once
    tags: [devices]
    security: [{bearerAuth: []}]
    requestBody:
      required: true
      content:
        application/json:
          schema: {$ref: "#/components/schemas/RegisterDevice"}
    responses:
      "201": {description: The device with its new secret}
      "400": {$ref: "#/components/responses/BadRequest"}
      "401": {$ref: "#/components/responses/Unauthorized"}
      "403": {$ref: "#/components/responses/Forbidden"}
      "409": {$ref: "#/components/responses/Conflict"}
      "413": {$ref: "#/components/responses/BadRequest"}
    """
    services, principal = await _require_device_role(request)
    payload = await decode_body(
        request, RegisterDeviceRequest, '{"device_id": "bedside-7", "bed_id": "bed-1"}'
    )
    secret = await _registry(services, principal).register(
        payload.device_id,
        serial_number=payload.serial_number,
        model=payload.model,
        firmware=payload.firmware,
        bed_id=payload.bed_id,
    )
    body = await _device_body(services, payload.device_id)
    body["secret"] = secret
    return JSONResponse(body, status_code=201)


async def show_device(request: Request) -> JSONResponse:
    """Return one device with its health.
    ---
    summary: Show one device with health
    tags: [devices]
    security: [{bearerAuth: []}]
    parameters: [{$ref: "#/components/parameters/DeviceId"}]
    responses:
      "200": {description: The device}
      "401": {$ref: "#/components/responses/Unauthorized"}
      "403": {$ref: "#/components/responses/Forbidden"}
      "404": {$ref: "#/components/responses/NotFound"}
    """
    services, _ = await _require_device_role(request)
    return JSONResponse(await _device_body(services, _device_id_of(request)))


async def rotate_credential(request: Request) -> JSONResponse:
    """Issue a new secret; the old one stops working and open connections close.
    ---
    summary: Rotate a device's credential; the response carries the new secret once
    tags: [devices]
    security: [{bearerAuth: []}]
    parameters: [{$ref: "#/components/parameters/DeviceId"}]
    responses:
      "200": {description: The device id and its new secret}
      "401": {$ref: "#/components/responses/Unauthorized"}
      "403": {$ref: "#/components/responses/Forbidden"}
      "404": {$ref: "#/components/responses/NotFound"}
      "409": {$ref: "#/components/responses/Conflict"}
    """
    services, principal = await _require_device_role(request)
    device_id = _device_id_of(request)
    secret = await _registry(services, principal).rotate_credential(device_id)
    await _disconnect(services, device_id, "device credential rotated")
    return JSONResponse({"device_id": device_id, "secret": secret})


async def bind_device(request: Request) -> JSONResponse:
    """Bind a device to a bed.
    ---
    summary: Bind a device to a bed
    tags: [devices]
    security: [{bearerAuth: []}]
    parameters: [{$ref: "#/components/parameters/DeviceId"}]
    requestBody:
      required: true
      content:
        application/json:
          schema: {$ref: "#/components/schemas/BindDevice"}
    responses:
      "200": {description: The device}
      "400": {$ref: "#/components/responses/BadRequest"}
      "401": {$ref: "#/components/responses/Unauthorized"}
      "403": {$ref: "#/components/responses/Forbidden"}
      "404": {$ref: "#/components/responses/NotFound"}
      "409": {$ref: "#/components/responses/Conflict"}
      "413": {$ref: "#/components/responses/BadRequest"}
    """
    services, principal = await _require_device_role(request)
    device_id = _device_id_of(request)
    payload = await decode_body(request, BindRequest, '{"bed_id": "bed-1"}')
    await _registry(services, principal).bind(device_id, payload.bed_id)
    return JSONResponse(await _device_body(services, device_id))


async def unbind_device(request: Request) -> JSONResponse:
    """Unbind a device from its bed.
    ---
    summary: Unbind a device from its bed
    tags: [devices]
    security: [{bearerAuth: []}]
    parameters: [{$ref: "#/components/parameters/DeviceId"}]
    responses:
      "200": {description: The device}
      "401": {$ref: "#/components/responses/Unauthorized"}
      "403": {$ref: "#/components/responses/Forbidden"}
      "404": {$ref: "#/components/responses/NotFound"}
    """
    services, principal = await _require_device_role(request)
    device_id = _device_id_of(request)
    await _registry(services, principal).unbind(device_id)
    return JSONResponse(await _device_body(services, device_id))


async def retire_device(request: Request) -> JSONResponse:
    """Retire a device: unbound, and refused at every later connection.
    ---
    summary: Retire a device
    tags: [devices]
    security: [{bearerAuth: []}]
    parameters: [{$ref: "#/components/parameters/DeviceId"}]
    responses:
      "200": {description: The device}
      "401": {$ref: "#/components/responses/Unauthorized"}
      "403": {$ref: "#/components/responses/Forbidden"}
      "404": {$ref: "#/components/responses/NotFound"}
      "409": {$ref: "#/components/responses/Conflict"}
    """
    services, principal = await _require_device_role(request)
    device_id = _device_id_of(request)
    await _registry(services, principal).retire(device_id)
    await _disconnect(services, device_id, "device retired")
    return JSONResponse(await _device_body(services, device_id))


routes = [
    Route("/devices", list_registered_devices, methods=["GET"]),
    Route("/devices", register_device, methods=["POST"]),
    Route("/devices/{device_id}", show_device, methods=["GET"]),
    Route("/devices/{device_id}/credential", rotate_credential, methods=["POST"]),
    Route("/devices/{device_id}/bed", bind_device, methods=["PUT"]),
    Route("/devices/{device_id}/bed", unbind_device, methods=["DELETE"]),
    Route("/devices/{device_id}/retire", retire_device, methods=["POST"]),
]
