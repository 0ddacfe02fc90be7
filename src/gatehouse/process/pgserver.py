"""A real PostgreSQL 15 server for the tests and the benchmark: ``initdb`` and ``pg_ctl``
into a temporary directory, on a loopback port picked at run time, run as an
unprivileged user.

PostgreSQL refuses to run as root, so as root the server runs as the ``postgres``
system user that Debian's package creates (scripts/setup.sh installs it), through
``runuser``; its directory is made in /tmp (pytest's own temporary directories are
closed to other users) and owned by that user. Each user of a server gets a fresh
database (``new_database``), so they do not see each other.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from gatehouse.process.ports import free_ports

__all__ = ["BIN", "PgServer"]

BIN = Path("/usr/lib/postgresql/15/bin")
SUPERUSER = "gatehouse"
TIMEOUT = 60  # seconds, for each pg_ctl or psql call


class PgServer:
    """One PostgreSQL server in its own directory; ``start`` waits until it accepts."""

    def __init__(self) -> None:
        if not (BIN / "initdb").exists():
            raise RuntimeError(f"PostgreSQL 15 is not installed ({BIN}/initdb is missing): "
                               "run scripts/setup.sh")
        self._as: list[str] = []
        owner: pwd.struct_passwd | None = None
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                raise RuntimeError("no 'postgres' user to run PostgreSQL as (root may not): "
                                   "run scripts/setup.sh") from None
            self._as = ["runuser", "-u", "postgres", "--"]
        self.dir = Path(tempfile.mkdtemp(prefix="gatehouse-pg-"))
        if owner is not None:
            os.chown(self.dir, owner.pw_uid, owner.pw_gid)
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        self.port = 0
        self._ctl(BIN / "initdb", "-D", str(self.data), "-U", SUPERUSER, "-A", "trust",
                  "-E", "UTF8", "--locale=C", "--no-sync")

    @property
    def host(self) -> str:
        return "127.0.0.1"

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@{self.host}:{self.port}/{database}"

    def start(self) -> None:
        """Start on a free loopback port (another one if that port was taken meanwhile)."""
        for _attempt in range(5):
            (self.port,) = free_ports(1)
            result = self._pg_ctl_start(check=False)
            if result.returncode == 0:
                return
        raise RuntimeError(f"PostgreSQL did not start: {result.stdout}{result.stderr}\n"
                           f"{self.log_text()}")

    def stop(self) -> None:
        if self.data.joinpath("postmaster.pid").exists():
            self._ctl(BIN / "pg_ctl", "-D", str(self.data), "-m", "fast", "-w",
                      "-t", str(TIMEOUT), "stop", check=False)

    def restart(self, down_for: float = 0.0) -> None:
        """Stop (closing every connection), stay down ``down_for`` seconds, and start
        again on the same port."""
        self._ctl(BIN / "pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", str(TIMEOUT),
                  "stop")
        time.sleep(down_for)
        self.start_again()

    def start_again(self) -> None:
        """Start after ``stop`` on the same port."""
        self._pg_ctl_start()

    def _pg_ctl_start(self, *, check: bool = True) -> subprocess.CompletedProcess[str]:
        # fsync off: a test database need not survive a power cut, and it makes
        # CREATE DATABASE and commits cheap on a shared machine.
        options = (f"-c listen_addresses={self.host} -c port={self.port} "
                   f"-c unix_socket_directories={self.dir} -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off")
        return self._ctl(BIN / "pg_ctl", "-D", str(self.data), "-l", str(self.log),
                         "-o", options, "-w", "-t", str(TIMEOUT), "start", check=check)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run sql with psql over the unix socket; returns its unaligned output."""
        result = self._ctl(BIN / "psql", "-h", str(self.dir), "-p", str(self.port),
                           "-U", SUPERUSER, "-d", database, "-v", "ON_ERROR_STOP=1",
                           "-X", "-A", "-t", "-c", sql)
        return result.stdout

    def new_database(self) -> str:
        """A fresh empty database; returns its connection string."""
        name = f"t_{uuid.uuid4().hex}"
        self.psql(f"CREATE DATABASE {name} TEMPLATE template0")
        return self.dsn(name)

    def log_text(self) -> str:
        with contextlib.suppress(OSError):
            return self.log.read_text(errors="replace")
        return ""

    def _ctl(self, *argv: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([*self._as, *map(str, argv)], capture_output=True, text=True,
                                timeout=TIMEOUT + 10, cwd=self.dir, check=False)
        if check and result.returncode != 0:
            raise RuntimeError(f"{Path(argv[0]).name} failed ({result.returncode}): "
                               f"{result.stderr.strip() or result.stdout.strip()}")
        return result
