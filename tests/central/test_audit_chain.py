"""The hash-chained audit log: appends, concurrent writers, tampering, verify."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest
from central_testkit import JWT_SECRET

from central import cli
from central.audit import GENESIS_HASH, Actor, AuditLog, verify_chain
from central.db.pool import open_pool
from central.services import Services

ROWS = 40
CONCURRENT_WRITERS = 60


async def _append(services: Services, count: int, start: int = 0) -> None:
    for number in range(start, start + count):
        await services.audit.record(
            services.pool,
            Actor.user(number % 3),
            "patient.read",
            patient_id=f"P-{number:04d}",
            detail={"number": number, "ratio": number / 7, "text": "ü\u2028"},
        )


async def _ids(services: Services) -> list[int]:
    rows = await services.pool.fetch("SELECT id FROM audit_log ORDER BY id")
    return [row["id"] for row in rows]


async def _as_owner_without_trigger(services: Services, statement: str) -> None:
    # The test role owns the test database, so it acts as an attacker with owner
    # rights who switches the append-only trigger off for one change.
    async with services.pool.acquire() as connection, connection.transaction():
        await connection.execute(
            "ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update_or_delete"
        )
        await connection.execute(statement)
        await connection.execute(
            "ALTER TABLE audit_log ENABLE TRIGGER audit_log_no_update_or_delete"
        )


async def test_empty_chain_intact(services: Services) -> None:
    report = await verify_chain(services.pool)
    assert report.intact
    assert report.rows == 0
    assert report.head_hash == GENESIS_HASH


async def test_sequential_appends_intact(services: Services) -> None:
    await _append(services, ROWS)
    report = await verify_chain(services.pool, batch_rows=7)
    assert report.intact, report.broken
    assert report.rows == ROWS
    assert report.unchained_rows == 0
    assert report.head_id == (await _ids(services))[-1]


async def test_rows_link_to_previous_hash(services: Services) -> None:
    await _append(services, 3)
    rows = await services.pool.fetch(
        "SELECT prev_hash, row_hash FROM audit_log ORDER BY id"
    )
    assert rows[0]["prev_hash"] == GENESIS_HASH
    assert rows[1]["prev_hash"] == rows[0]["row_hash"]
    assert rows[2]["prev_hash"] == rows[1]["row_hash"]


async def test_concurrent_writers_one_chain(
    services: Services, database_url: str
) -> None:
    # A second pool plays a second central process on the same database.
    other = await open_pool(database_url, max_size=5)
    try:
        writes = [
            AuditLog().record(
                services.pool if number % 2 else other,
                Actor.device(f"bed-{number}"),
                "device.connect",
                detail={"number": number},
            )
            for number in range(CONCURRENT_WRITERS)
        ]
        await asyncio.gather(*writes)
    finally:
        await other.close()
    report = await verify_chain(services.pool)
    assert report.intact, report.broken
    assert report.rows == CONCURRENT_WRITERS
    forks = await services.pool.fetchval(
        "SELECT count(*) - count(DISTINCT prev_hash) FROM audit_log"
    )
    assert forks == 0


async def test_changed_row_found(services: Services) -> None:
    await _append(services, ROWS)
    target = (await _ids(services))[17]
    await _as_owner_without_trigger(
        services, f"UPDATE audit_log SET outcome = 'refused' WHERE id = {target}"
    )
    report = await verify_chain(services.pool, batch_rows=5)
    assert report.broken is not None
    assert report.broken.row_id == target
    assert "was changed" in report.broken.problem
    assert report.rows == 17


async def test_changed_detail_found(services: Services) -> None:
    await _append(services, 10)
    target = (await _ids(services))[4]
    await _as_owner_without_trigger(
        services,
        "UPDATE audit_log SET detail = jsonb_set(detail, '{number}', '99') "
        f"WHERE id = {target}",
    )
    report = await verify_chain(services.pool)
    assert report.broken is not None
    assert report.broken.row_id == target


async def test_removed_row_found(services: Services) -> None:
    await _append(services, 10)
    ids = await _ids(services)
    await _as_owner_without_trigger(
        services, f"DELETE FROM audit_log WHERE id = {ids[5]}"
    )
    report = await verify_chain(services.pool)
    assert report.broken is not None
    assert report.broken.row_id == ids[6]
    assert "removed" in report.broken.problem


async def test_removed_last_row_found(services: Services) -> None:
    await _append(services, 10)
    ids = await _ids(services)
    await _as_owner_without_trigger(
        services, f"DELETE FROM audit_log WHERE id = {ids[-1]}"
    )
    report = await verify_chain(services.pool)
    assert report.broken is not None
    assert report.broken.row_id == ids[-1]
    assert "chain head" in report.broken.problem


async def test_unlinked_insert_rejected(services: Services) -> None:
    with pytest.raises(asyncpg.CheckViolationError, match="no prev_hash"):
        await services.pool.execute(
            "INSERT INTO audit_log (actor_kind, action, outcome) "
            "VALUES ('system', 'x', 'ok')"
        )


async def test_stale_link_rejected(services: Services) -> None:
    await _append(services, 2)
    with pytest.raises(asyncpg.SerializationError, match="chain ends at"):
        await services.pool.execute(
            "INSERT INTO audit_log (actor_kind, action, outcome, prev_hash, row_hash) "
            "VALUES ('system', 'x', 'ok', $1, $1)",
            GENESIS_HASH,
        )


async def test_chain_head_cannot_be_deleted(services: Services) -> None:
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
        await services.pool.execute("DELETE FROM audit_chain_head")


async def test_service_role_cannot_rewrite(
    services: Services, database_url: str
) -> None:
    role = f"aura_service_{uuid.uuid4().hex[:12]}"
    grants = [
        f"CREATE ROLE {role} LOGIN",
        f"GRANT SELECT, INSERT ON audit_log TO {role}",
        f"GRANT USAGE ON SEQUENCE audit_log_id_seq TO {role}",
        f"GRANT SELECT ON audit_chain_head TO {role}",
    ]
    for statement in grants:
        await services.pool.execute(statement)
    try:
        service = await asyncpg.connect(database_url, user=role)
        try:
            await AuditLog().record(service, Actor("system"), "as.service")
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await service.execute("UPDATE audit_chain_head SET last_id = 0")
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await service.execute(
                    "ALTER TABLE audit_log DISABLE TRIGGER audit_log_link_to_chain"
                )
        finally:
            await service.close()
    finally:
        await services.pool.execute(f"DROP OWNED BY {role}")
        await services.pool.execute(f"DROP ROLE {role}")
    report = await verify_chain(services.pool)
    assert report.intact, report.broken
    assert report.rows == 1


async def test_cli_verify_exit_status(
    services: Services,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("JWT_SECRET", JWT_SECRET)
    await _append(services, 5)
    assert await asyncio.to_thread(cli.main, ["audit", "verify"]) == 0
    assert "chain intact, 5 rows" in capsys.readouterr().out
    target = (await _ids(services))[2]
    await _as_owner_without_trigger(
        services, f"UPDATE audit_log SET action = 'other' WHERE id = {target}"
    )
    assert await asyncio.to_thread(cli.main, ["audit", "verify"]) == 1
    assert f"chain broken at row {target}:" in capsys.readouterr().out
