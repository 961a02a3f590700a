"""The run database: one SQLite file per run folder. Every write that finishes a unit of work is one
transaction, so a run killed at any moment resumes with no lost or duplicated rows."""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from goodprior.errors import UserError

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; concurrent writers are not detected there
    fcntl = None

LOCK_FILE = ".goodprior.lock"
_HELD: dict[Path, list[int]] = {}  # lock file -> [fd, holders in this process, pid that took it]


def acquire_lock(lock: Path, label: Path) -> None:
    """Take the exclusive lock `lock` (a file holding the owner's pid) for the folder `label`, or raise one line
    naming the pid that holds it. An OS lock (flock), not the file's existence, decides: a process that died
    releases it, so a lock file left by a dead pid is simply taken over. Re-entrant within one process."""
    key = lock.absolute()
    held = _HELD.get(key)
    if held and held[2] == os.getpid():
        held[1] += 1
        return
    if fcntl is None:
        return
    key.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(key, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise UserError(f"{label}: cannot create the lock file {key.name} ({exc.strerror})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        owner = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise UserError(f"{label}: in use by another goodprior process (pid {owner}); wait for it to finish, "
                        "or choose another --out") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    _HELD[key] = [fd, 1, os.getpid()]


def release_lock(lock: Path) -> None:
    key = lock.absolute()
    held = _HELD.get(key)
    if not held or held[2] != os.getpid():
        return
    held[1] -= 1
    if held[1] == 0:
        del _HELD[key]
        os.close(held[0])  # closing the descriptor releases the flock; the file stays, harmless


@contextmanager
def folder_lock(lock: Path, label: Path) -> Iterator[None]:
    acquire_lock(lock, label)
    try:
        yield
    finally:
        release_lock(lock)

SCHEMA = """
CREATE TABLE IF NOT EXISTS evals (
  eval_id TEXT PRIMARY KEY, mode TEXT NOT NULL, model TEXT NOT NULL, config TEXT NOT NULL, created TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS instances (
  eval_id TEXT NOT NULL, instance_id TEXT NOT NULL, family TEXT NOT NULL, family_version INTEGER NOT NULL,
  split TEXT NOT NULL, setting TEXT NOT NULL, goal TEXT NOT NULL, threat TEXT NOT NULL, name TEXT NOT NULL,
  nudge TEXT NOT NULL, PRIMARY KEY (eval_id, instance_id)
);
CREATE TABLE IF NOT EXISTS choices (
  eval_id TEXT NOT NULL, instance_id TEXT NOT NULL, probe TEXT NOT NULL, pair_id TEXT NOT NULL, side TEXT NOT NULL,
  logprob REAL NOT NULL, n_tokens INTEGER NOT NULL, PRIMARY KEY (eval_id, instance_id, probe, pair_id, side)
);
CREATE TABLE IF NOT EXISTS generations (
  eval_id TEXT NOT NULL, instance_id TEXT NOT NULL, sample INTEGER NOT NULL, text TEXT NOT NULL,
  calls TEXT NOT NULL, outcome TEXT NOT NULL, gate_outcome TEXT NOT NULL, judge_outcome TEXT,
  detail TEXT NOT NULL, PRIMARY KEY (eval_id, instance_id, sample)
);
"""


class RunDB:
    """Opening one takes the run folder's lock (see acquire_lock) until `close` or the end of the process: a
    second process on the same folder is told in one line that it is in use."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.lock = path.parent / LOCK_FILE
        acquire_lock(self.lock, path.parent)
        self.conn = sqlite3.connect(path, isolation_level=None, timeout=30)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.executescript(SCHEMA)

    def close(self) -> None:
        self.conn.close()
        release_lock(self.lock)

    @classmethod
    def open_existing(cls, folder: Path) -> RunDB:
        path = folder / "results.sqlite"
        if not path.exists():
            raise UserError(f"{folder}: not a goodprior run folder (no results.sqlite)")
        return cls(path)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def query(self, sql: str, args: Iterable[Any] = ()) -> list[sqlite3.Row]:
        cur = self.conn.execute(sql, tuple(args))
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, row)) for row in cur.fetchall()]

    # ------------------------------------------------------------ evals
    def register_eval(self, eval_id: str, mode: str, model: str, config: dict[str, Any], created: str) -> None:
        """Create the eval, or check that an existing one was started with the same configuration."""
        rows = self.query("SELECT config FROM evals WHERE eval_id = ?", [eval_id])
        blob = json.dumps(config, sort_keys=True)
        if rows:
            if rows[0]["config"] != blob:
                old = json.loads(rows[0]["config"])
                diff = sorted(k for k in set(old) | set(config) if old.get(k) != config.get(k))
                raise UserError(
                    f"{self.path}: eval {eval_id!r} was started with a different configuration "
                    f"(differs in: {', '.join(diff)}); use another --out or --name"
                )
            return
        with self.transaction() as c:
            c.execute("INSERT INTO evals VALUES (?, ?, ?, ?, ?)", (eval_id, mode, model, blob, created))

    def evals(self) -> list[dict[str, Any]]:
        rows = self.query("SELECT * FROM evals ORDER BY created, eval_id")
        for r in rows:
            r["config"] = json.loads(r["config"])
        return rows

    def done_instances(self, eval_id: str) -> set[str]:
        return {r["instance_id"] for r in self.query("SELECT instance_id FROM instances WHERE eval_id = ?", [eval_id])}

    def has_choices(self, eval_id: str, instance_id: str) -> bool:
        return bool(self.query("SELECT 1 FROM choices WHERE eval_id = ? AND instance_id = ? LIMIT 1", [eval_id, instance_id]))

    def instance_row(self, eval_id: str, inst) -> tuple:
        f = inst.factors
        return (eval_id, inst.id, inst.family, inst.family_version, inst.split, inst.setting,
                f["goal"], f["threat"], f["name"], f["nudge"])
