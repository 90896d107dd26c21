"""Backup and restore of the whole database and the attached files, checked before and after.

SQLite: an online copy through SQLite's backup API (safe while the server runs, unlike
copying a WAL-mode file), checked with ``PRAGMA integrity_check``. PostgreSQL: ``pg_dump``
in its custom format and ``pg_restore --clean``. After a restore the audit trail's hash
chain is verified, so a restored database that was tampered with is noticed at once.
"""
from __future__ import annotations

import shutil
import sqlite3
import subprocess
from pathlib import Path

from sqlalchemy.engine import make_url


class BackupError(RuntimeError):
    pass


def _sqlite_path(url) -> Path:
    if not url.database or url.database == ":memory:":
        raise BackupError("an in-memory database cannot be backed up")
    return Path(url.database)


def _check_sqlite(path: Path) -> None:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        result = conn.execute("PRAGMA integrity_check").fetchone()[0]
        conn.execute("SELECT count(*) FROM audit_events").fetchone()
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"{path} is not a usable GiảiTrình database: {exc}") from None
    finally:
        conn.close()
    if result != "ok":
        raise BackupError(f"{path} failed the integrity check: {result}")


def _pg_args(url) -> tuple[list[str], dict]:
    args = ["-h", url.host or "127.0.0.1", "-p", str(url.port or 5432), "-U", url.username or "postgres"]
    env = {"PGPASSWORD": url.password} if url.password else {}
    return args, env


def _run(cmd: list[str], env: dict) -> None:
    import os

    if shutil.which(cmd[0]) is None:
        raise BackupError(f"{cmd[0]} is not installed (apt-get install postgresql-client)")
    done = subprocess.run(cmd, env={**os.environ, **env}, capture_output=True, text=True)
    if done.returncode != 0:
        raise BackupError(f"{cmd[0]} failed: {done.stderr.strip()[-2000:]}")


def files_dir(backup_file: Path) -> Path:
    """Where the attached files of a backup are kept: beside it, ``<backup>.files/``."""
    backup_file = Path(backup_file)
    return backup_file.with_name(backup_file.name + ".files")


def _copy_store(source: Path, target: Path) -> int:
    """Copy the content-addressed files ``source/aa/<sha256>`` missing from ``target``, each checked
    against its name; a file that does not match its digest is refused, never copied."""
    import hashlib
    import re

    copied = 0
    if not source.is_dir():
        return 0
    for path in sorted(source.glob("??/*")):
        if not re.fullmatch(r"[0-9a-f]{64}", path.name) or not path.is_file():
            continue  # a temporary file of an upload in progress
        destination = target / path.parent.name / path.name
        if destination.exists() and destination.stat().st_size == path.stat().st_size:
            continue
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != path.name:
            raise BackupError(f"{path} does not match its digest: the file store is damaged")
        destination.parent.mkdir(parents=True, exist_ok=True)
        partial = destination.with_name(destination.name + ".partial")
        partial.write_bytes(data)
        partial.replace(destination)
        copied += 1
    return copied


def backup(database_url: str, target: Path) -> Path:
    """The database into ``target`` and the attached files into ``<target>.files/`` (incremental)."""
    from .engine.attachments import storage_dir

    target = _backup_database(database_url, target)
    _copy_store(storage_dir(), files_dir(target))
    return target


def _backup_database(database_url: str, target: Path) -> Path:
    url = make_url(database_url)
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if url.get_backend_name() == "sqlite":
        source = sqlite3.connect(_sqlite_path(url))
        partial = target.with_suffix(target.suffix + ".partial")
        dest = sqlite3.connect(partial)
        try:
            source.backup(dest)
        finally:
            dest.close()
            source.close()
        _check_sqlite(partial)
        partial.replace(target)
        return target
    args, env = _pg_args(url)
    _run(["pg_dump", "-Fc", "--no-owner", *args, "-f", str(target), url.database], env)
    return target


def restore(database_url: str, source: Path) -> None:
    """Replace the database's content with the backup's, and bring back the attached files it
    kept that the store lacks. Stop the servers first."""
    from .engine.attachments import storage_dir

    source = Path(source)
    if not source.is_file():
        raise BackupError(f"no backup file at {source}")
    # Files first: adding content-addressed files the store lacks harms nothing, and a damaged
    # copy stops the restore before the database is touched.
    _copy_store(files_dir(source), storage_dir())
    _restore_database(database_url, source)


def _restore_database(database_url: str, source: Path) -> None:
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        _check_sqlite(source)
        target = _sqlite_path(url)
        src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
        dest = sqlite3.connect(target)
        try:
            src.backup(dest)  # page by page into the live file: WAL and readers stay consistent
        finally:
            dest.close()
            src.close()
        return
    args, env = _pg_args(url)
    _run(["pg_restore", "--clean", "--if-exists", "--no-owner", "--single-transaction", *args, "-d", url.database,
          str(source)], env)
