"""The served OpenAPI description covers every HTTP route of the app."""

from __future__ import annotations

import httpx
import schemathesis
from starlette.applications import Starlette
from starlette.routing import Route

from central.openapi import undescribed_operations


def _operations(app: Starlette) -> set[tuple[str, str]]:
    operations = set()
    for route in app.routes:
        if isinstance(route, Route):
            for method in route.methods or ():
                if method != "HEAD":
                    operations.add((route.path, method.lower()))
    return operations


async def test_every_route_described(app: Starlette) -> None:
    assert undescribed_operations(app.routes) == []


async def test_served_description_lists_every_route(
    app: Starlette, client: httpx.AsyncClient
) -> None:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    description = response.json()
    assert description["openapi"].startswith("3.")
    served = {
        (path, method)
        for path, methods in description["paths"].items()
        for method in methods
    }
    assert served == _operations(app)


async def test_description_is_valid_openapi(client: httpx.AsyncClient) -> None:
    description = (await client.get("/openapi.json")).json()
    # Raises with the failing path when the document breaks the OpenAPI 3.0 schema.
    schemathesis.openapi.from_dict(description).validate()


async def test_references_resolve(client: httpx.AsyncClient) -> None:
    description = (await client.get("/openapi.json")).json()
    references: list[str] = []

    def collect(node: object) -> None:
        if isinstance(node, dict):
            if "$ref" in node:
                references.append(node["$ref"])
            for value in node.values():
                collect(value)
        elif isinstance(node, list):
            for value in node:
                collect(value)

    collect(description["paths"])
    assert references
    for reference in references:
        target = description
        for part in reference.removeprefix("#/").split("/"):
            assert part in target, reference
            target = target[part]


async def test_undescribed_route_is_reported() -> None:
    async def bare(request: object) -> None:
        """No operation here."""

    routes = [Route("/bare", bare, methods=["GET", "POST"])]
    assert undescribed_operations(routes) == ["GET /bare", "POST /bare"]
