"""A throwaway PostgreSQL + PostGIS cluster for the tests, and fresh databases inside it.

``throwaway_cluster()`` starts a cluster of its own on 127.0.0.1 (a free port, the socket in its
temporary folder, trust authentication) and removes it afterwards. initdb refuses to run as root,
so as root the cluster belongs to the ``postgres`` user (``runuser -u postgres --``).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

__all__ = ["missing_postgis", "throwaway_cluster", "fresh_database"]


def _bindir() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                   key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0)
    return found[-1].parent if found else None


def missing_postgis() -> str | None:
    """Why a throwaway cluster cannot start here, or None when it can."""
    bindir = _bindir()
    if bindir is None:
        return "no PostgreSQL binaries in /usr/lib/postgresql/*/bin (apt install postgresql-15)"
    version = bindir.parent.name
    if not Path(f"/usr/share/postgresql/{version}/extension/postgis.control").exists():
        return f"PostgreSQL {version} has no postgis extension (apt install postgresql-{version}-postgis-3)"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root without runuser, and initdb refuses root"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def throwaway_cluster():
    """Start a cluster, yield its URL (user ``postgres``, database ``postgres``), then remove it."""
    reason = missing_postgis()
    if reason:
        raise RuntimeError(reason)
    bindir = _bindir()
    root = Path(tempfile.mkdtemp(prefix="gridmap-pg-"))
    as_postgres = os.geteuid() == 0
    prefix = ["runuser", "-u", "postgres", "--"] if as_postgres else []
    if as_postgres:
        shutil.chown(root, "postgres")
    data = root / "data"

    def run(*args: str) -> None:
        done = subprocess.run([*prefix, str(bindir / args[0]), *args[1:]], capture_output=True,
                              text=True)
        if done.returncode:
            raise RuntimeError(f"{args[0]} failed: {(done.stderr or done.stdout).strip()[-500:]}")

    try:
        run("initdb", "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8",
            "--no-sync")
        port = _free_port()
        run("pg_ctl", "-D", str(data), "-l", str(root / "log"), "-w", "-t", "60", "-o",
            f"-h 127.0.0.1 -p {port} -k {root} -c fsync=off -c full_page_writes=off", "start")
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate",
                            "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def fresh_database(url: str):
    """A new database with PostGIS beside the one ``url`` names; yields its URL, then drops it."""
    import psycopg2

    name = f"gridmap_test_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(url)
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
        parts = urlsplit(url)
        db_url = urlunsplit(parts._replace(path=f"/{name}"))
        with psycopg2.connect(db_url) as conn, conn.cursor() as cur:
            cur.execute("CREATE EXTENSION postgis")
        conn.close()
        yield db_url
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
