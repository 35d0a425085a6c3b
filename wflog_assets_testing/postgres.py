"""A throwaway PostgreSQL server on loopback (initdb into a temporary directory), for the
Postgres-backed Dagster instance in tests and in bench/bench_scale_out.py.

The server binaries come from the distribution's packages (`.ci/setup` installs them with
apt when missing). Set WFLOG_TEST_PG_BINDIR to use other binaries. As root, initdb and the
server run as the `postgres` user, which the package creates (PostgreSQL refuses root).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from wflog_assets_testing.weed import free_ports

SUPERUSER = "postgres"


class PostgresStartError(RuntimeError):
    """The PostgreSQL server could not be found or did not start."""


@dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    username: str
    password: str
    data_dir: Path
    bindir: Path

    def env(self, db_name: str) -> dict[str, str]:
        """The variables that the production dagster.yaml reads (see README)."""
        return {
            "DAGSTER_PG_HOST": self.host,
            "DAGSTER_PG_PORT": str(self.port),
            "DAGSTER_PG_USERNAME": self.username,
            "DAGSTER_PG_PASSWORD": self.password,
            "DAGSTER_PG_DB": db_name,
        }

    def psql(self, sql: str, db_name: str = "postgres") -> str:
        out = subprocess.run(
            [
                str(self.bindir / "psql"),
                "-h",
                self.host,
                "-p",
                str(self.port),
                "-U",
                self.username,
                "-d",
                db_name,
                "-v",
                "ON_ERROR_STOP=1",
                "-At",
                "-c",
                sql,
            ],
            env={**os.environ, "PGPASSWORD": self.password},
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        if out.returncode != 0:
            raise PostgresStartError(f"psql failed: {out.stderr.strip()}")
        return out.stdout

    @contextmanager
    def database(self, prefix: str = "wflog_test") -> Iterator[str]:
        """A new database, dropped afterwards (connections to it are closed first)."""
        name = f"{prefix}_{secrets.token_hex(4)}"
        self.psql(f'CREATE DATABASE "{name}"')
        try:
            yield name
        finally:
            self.psql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")
            self.psql(f'DROP DATABASE IF EXISTS "{name}"')


def find_bindir() -> Path:
    configured = os.environ.get("WFLOG_TEST_PG_BINDIR")
    candidates = (
        [Path(configured)]
        if configured
        else sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name), reverse=True)
    )
    if not configured and shutil.which("initdb"):
        candidates.append(Path(shutil.which("initdb")).parent)  # type: ignore[arg-type]
    for bindir in candidates:
        if (bindir / "initdb").exists() and (bindir / "pg_ctl").exists():
            return bindir
    raise PostgresStartError(
        "PostgreSQL server binaries (initdb, pg_ctl) not found: run `bash .ci/setup` (installs the "
        "distribution's postgresql package) or set WFLOG_TEST_PG_BINDIR"
    )


def _as_server_user(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", SUPERUSER, "--", *cmd] if os.geteuid() == 0 else cmd


def start_postgres(timeout_s: float = 60.0) -> PostgresServer:
    bindir = find_bindir()
    # Not under pytest's tmp_path: as root that is mode 700, which the postgres user cannot enter.
    root = Path(tempfile.mkdtemp(prefix="wflog-pg-"))
    data_dir = root / "data"
    password = secrets.token_urlsafe(18)
    pwfile = root / "pwfile"
    pwfile.write_text(password + "\n")
    if os.geteuid() == 0:
        shutil.chown(root, SUPERUSER)
        shutil.chown(pwfile, SUPERUSER)
    (port,) = free_ports(1)
    init = subprocess.run(
        _as_server_user(
            [
                str(bindir / "initdb"),
                "-D",
                str(data_dir),
                "-U",
                SUPERUSER,
                f"--pwfile={pwfile}",
                "--auth=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            ]
        ),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    pwfile.unlink()
    if init.returncode != 0:
        raise PostgresStartError(f"initdb failed: {init.stderr.strip()}")
    options = (
        f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={root} "
        "-c max_connections=200 -c fsync=off -c synchronous_commit=off "
        "-c full_page_writes=off"
    )
    start = subprocess.run(
        _as_server_user(
            [
                str(bindir / "pg_ctl"),
                "-D",
                str(data_dir),
                "-l",
                str(root / "server.log"),
                "-o",
                options,
                "-w",
                "-t",
                str(int(timeout_s)),
                "start",
            ]
        ),
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout_s + 10,
    )
    server = PostgresServer(
        host="127.0.0.1", port=port, username=SUPERUSER, password=password, data_dir=data_dir, bindir=bindir
    )
    if start.returncode != 0:
        log = (root / "server.log").read_text() if (root / "server.log").exists() else ""
        raise PostgresStartError(f"pg_ctl start failed: {start.stderr.strip()} {log[-2000:]}")
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            server.psql("SELECT 1")
            return server
        except PostgresStartError:
            if time.monotonic() > deadline:
                stop_postgres(server)
                raise
            time.sleep(0.3)


def stop_postgres(server: PostgresServer) -> None:
    stop = subprocess.run(
        _as_server_user(
            [
                str(server.bindir / "pg_ctl"),
                "-D",
                str(server.data_dir),
                "-m",
                "fast",
                "-w",
                "-t",
                "30",
                "stop",
            ]
        ),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    if stop.returncode != 0:
        pid_file = server.data_dir / "postmaster.pid"
        if pid_file.exists():
            os.kill(int(pid_file.read_text().split()[0]), signal.SIGKILL)
    shutil.rmtree(server.data_dir.parent, ignore_errors=True)


@contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    server = start_postgres()
    try:
        yield server
    finally:
        stop_postgres(server)
