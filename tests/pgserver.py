"""The test process's PostgreSQL 15 server (gatehouse.process.pgserver): one per test
process (``shared()``), stopped by the session fixture in tests/conftest.py; each test
or backend gets a fresh database (``new_database``), so tests do not see each other.
"""

from __future__ import annotations

import threading

from gatehouse.process.pgserver import BIN, PgServer

__all__ = ["BIN", "PgServer", "shared", "stop_shared"]

_lock = threading.Lock()
_server: PgServer | None = None


def shared() -> PgServer:
    """This test process's server, started on first use."""
    global _server
    with _lock:
        if _server is None:
            server = PgServer()
            try:
                server.start()
            except BaseException:
                server.remove()
                raise
            _server = server
        return _server


def stop_shared() -> None:
    global _server
    with _lock:
        if _server is not None:
            _server.remove()
            _server = None
