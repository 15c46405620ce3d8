"""Property-based fuzzing of every described REST route: no request may cause a 500.

schemathesis generates valid and invalid requests from the served /openapi.json and
sends them over HTTP to central on uvicorn with a real PostgreSQL, once as an
administrator (who may use every route) and once without a token. Hypothesis runs
derandomized with a fixed example budget, so the run is repeatable and bounded.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import httpx
import requests
import schemathesis
from central_testkit import (
    DEVICE_ID,
    JWT_SECRET,
    PASSWORD,
    Demo,
    LiveServer,
    emergency,
    numerics,
)
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from central.auth import issue_token
from central.services import Services
from central.storage import store_batch
from central.users import upsert_user
from protocol.messages import decode_device_message

# Examples per operation and caller, drawn from valid and invalid inputs together.
EXAMPLES_PER_RUN = 15
TIMEOUT_S = 10


@dataclass(frozen=True)
class ServerError:
    operation: str
    caller: str
    status: int
    request: str


def _fuzz_operation(
    operation: schemathesis.APIOperation,
    base_url: str,
    caller: str,
    headers: dict[str, str],
    session: requests.Session,
) -> list[ServerError]:
    errors: list[ServerError] = []
    strategy = st.one_of(
        operation.as_strategy(schemathesis.GenerationMode.POSITIVE),
        operation.as_strategy(schemathesis.GenerationMode.NEGATIVE),
    )

    @settings(
        max_examples=EXAMPLES_PER_RUN,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def run(case: schemathesis.Case) -> None:
        # A copy, because schemathesis adds its own defaults to the dict it is given.
        response = case.call(
            base_url=base_url, session=session, headers=dict(headers), timeout=TIMEOUT_S
        )
        if response.status_code >= 500:
            errors.append(
                ServerError(
                    operation.label,
                    caller,
                    response.status_code,
                    case.as_curl_command(headers=headers),
                )
            )

    run()
    return errors


def _fuzz(
    description: dict, base_url: str, token: str
) -> tuple[int, list[ServerError]]:
    schema = schemathesis.openapi.from_dict(description)
    session = requests.Session()
    # Only this test's server on 127.0.0.1 may be reached, whatever proxy is set.
    session.trust_env = False
    callers = {"admin": {"Authorization": f"Bearer {token}"}, "anonymous": {}}
    operations = 0
    errors: list[ServerError] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        for caller, headers in callers.items():
            errors += _fuzz_operation(operation, base_url, caller, headers, session)
    session.close()
    return operations, errors


async def test_no_server_errors(
    live_server: LiveServer, services: Services, demo: Demo
) -> None:
    # Stored vitals and an alarm, so that reads return data for the demo patient.
    frames = [numerics(1), numerics(2, heart_rate=130.0), emergency(3)]
    messages = [decode_device_message(frame) for frame in frames]
    await store_batch(services.pool, DEVICE_ID, messages)
    admin_id = await upsert_user(services.pool, "admin.ida", "Ida", PASSWORD, ["admin"])
    token = issue_token(JWT_SECRET, admin_id, services.settings.token_ttl_s)
    async with httpx.AsyncClient(
        base_url=live_server.http_url, trust_env=False
    ) as client:
        description = (await client.get("/openapi.json")).json()
    operations, errors = await asyncio.to_thread(
        _fuzz, description, live_server.http_url, token
    )
    assert operations == sum(len(methods) for methods in description["paths"].values())
    assert [(e.operation, e.caller, e.status) for e in errors] == [], errors
