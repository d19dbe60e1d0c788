"""Content-addressed sqlite cache of successful LLM answers.

WAL mode + a busy timeout make it safe for several processes (datatrove tasks) at once; each answer
is committed as soon as it arrives, so a process killed with SIGKILL loses at most the requests that
were in flight. Only successes are stored: a failed request is retried by the next run. No request
headers (and so no API key) are ever stored - only the key hash, the answer and its accounting.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    key TEXT PRIMARY KEY,
    model TEXT,
    text TEXT,
    finish_reason TEXT,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    cost_usd REAL,
    system_fingerprint TEXT,
    source TEXT,
    created_at REAL,
    logprobs TEXT
);
CREATE TABLE IF NOT EXISTS spend (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    cost_usd REAL,
    source TEXT,
    created_at REAL
);
CREATE TABLE IF NOT EXISTS reservations (
    token TEXT PRIMARY KEY,
    usd REAL,
    host TEXT,
    pid INTEGER,
    created_at REAL
);
CREATE TABLE IF NOT EXISTS batches (
    batch_id TEXT PRIMARY KEY,
    model TEXT,
    endpoint TEXT,
    n_requests INTEGER,
    status TEXT,
    created_at REAL,
    updated_at REAL
);
"""
_COLUMNS = (
    "key",
    "model",
    "text",
    "finish_reason",
    "prompt_tokens",
    "completion_tokens",
    "cost_usd",
    "system_fingerprint",
    "source",
    "created_at",
    "logprobs",
)
SCHEMA_VERSION = 2  # 2: logprobs column, spend ledger (cumulative budget), reservations
TERMINAL_BATCH_STATUSES = ("completed", "failed", "expired", "cancelled", "imported")


class ResultCache:
    """sqlite cache: ``get_many(keys) -> {key: row}``, ``put(row)``. One connection per process/thread.

    >>> cache = ResultCache("/tmp/llm_cache_doctest.sqlite")
    >>> cache.put({"key": "k", "model": "m", "text": "hi"}); cache.get_many(["k"])["k"]["text"]
    'hi'
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()

    @property
    def conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=60.0, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA busy_timeout=60000")
            conn.execute("PRAGMA journal_mode=WAL")
            # NORMAL: a commit survives a killed process (not a power loss) and costs no fsync
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.executescript(_SCHEMA)
            if conn.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
                _migrate(conn)
            self._local.conn = conn
        return conn

    def get_many(self, keys: Iterable[str]) -> dict[str, dict]:
        keys = list(dict.fromkeys(keys))
        out: dict[str, dict] = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            q = f"SELECT {', '.join(_COLUMNS)} FROM results WHERE key IN ({','.join('?' * len(chunk))})"
            for row in self.conn.execute(q, chunk):
                out[row[0]] = dict(zip(_COLUMNS, row, strict=True))
        return out

    def put(self, row: dict, book: bool = False) -> None:
        self.put_many([row], book=book)

    def put_many(self, rows: list[dict], book: bool = False) -> None:
        """Insert answers; with ``book=True`` also book their cost in the spend ledger (same transaction)."""
        if not rows:
            return
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            _insert_rows(conn, rows)
            if book:
                _book(conn, [r for r in rows if r.get("cost_usd") or r.get("prompt_tokens")])
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def __getstate__(self) -> dict:  # connections don't pickle; each process opens its own
        return {"path": self.path}

    def __setstate__(self, state: dict) -> None:
        self.path = state["path"]
        self._local = threading.local()

    def __bool__(self) -> bool:  # an empty cache is still a cache (``if cache:`` must not mean "non-empty")
        return True

    def __len__(self) -> int:
        return self.conn.execute("SELECT COUNT(*) FROM results").fetchone()[0]

    # -- batch bookkeeping: a crash while polling resumes from the recorded batch ids
    def record_batch(self, batch_id: str, model: str, endpoint: str, n_requests: int, status: str) -> None:
        now = time.time()
        self.conn.execute(
            "INSERT OR REPLACE INTO batches (batch_id, model, endpoint, n_requests, status, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, COALESCE((SELECT created_at FROM batches WHERE batch_id=?), ?), ?)",
            (batch_id, model, endpoint, n_requests, status, batch_id, now, now),
        )

    def open_batches(self) -> list[str]:
        q = f"SELECT batch_id FROM batches WHERE status NOT IN ({','.join('?' * len(TERMINAL_BATCH_STATUSES))})"
        return [r[0] for r in self.conn.execute(q, TERMINAL_BATCH_STATUSES)]

    # -- the spend ledger: every answer the provider billed, committed with the answer itself, so
    # -- the spend of a cache is cumulative over processes, reruns and raised budgets
    def spent(self) -> dict:
        """Cumulative spend recorded in this cache: ``{"cost_usd", "prompt_tokens", "completion_tokens", "answers"}``."""
        row = self.conn.execute(
            "SELECT COALESCE(SUM(cost_usd), 0), COALESCE(SUM(prompt_tokens), 0),"
            " COALESCE(SUM(completion_tokens), 0), COUNT(*) FROM spend"
        ).fetchone()
        return {"cost_usd": row[0], "prompt_tokens": row[1], "completion_tokens": row[2], "answers": row[3]}

    def reserve(self, token: str, usd: float, budget_usd: float) -> tuple[bool, float, float]:
        """Reserve ``usd`` of ``budget_usd`` if spent + all open reservations + usd still fit (atomic over
        processes). -> (reserved, budget left after spend and open reservations, open reservations)."""
        import os
        import socket

        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            spent = conn.execute("SELECT COALESCE(SUM(cost_usd), 0) FROM spend").fetchone()[0]
            held = conn.execute("SELECT COALESCE(SUM(usd), 0) FROM reservations").fetchone()[0]
            left = budget_usd - spent - held
            ok = usd <= left + 1e-12
            if ok:
                conn.execute(
                    "INSERT INTO reservations (token, usd, host, pid, created_at) VALUES (?, ?, ?, ?, ?)",
                    (token, usd, socket.gethostname(), os.getpid(), time.time()),
                )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return ok, (left - usd if ok else left), held

    def settle(self, token: str | None, spend: dict | None = None, row: dict | None = None) -> None:
        """In one transaction: drop reservation ``token``, book ``spend`` (key, tokens, cost) and cache ``row``."""
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            if token:
                conn.execute("DELETE FROM reservations WHERE token = ?", (token,))
            if spend:
                _book(conn, [spend])
            if row:
                _insert_rows(conn, [row])
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def drop_stale_reservations(self, max_age_s: float = 6 * 3600) -> int:
        """Reservations of dead processes on this host (a killed run) or older than ``max_age_s``."""
        import os
        import socket

        host, stale = socket.gethostname(), []
        for token, h, pid, created in self.conn.execute(
            "SELECT token, host, pid, created_at FROM reservations"
        ):
            if time.time() - created > max_age_s or (h == host and pid != os.getpid() and not _alive(pid)):
                stale.append((token,))
        if stale:
            self.conn.executemany("DELETE FROM reservations WHERE token = ?", stale)
        return len(stale)

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


def _insert_rows(conn: sqlite3.Connection, rows: list[dict]) -> None:
    now = time.time()
    values = [tuple(r.get(c) if c != "created_at" else r.get(c, now) for c in _COLUMNS) for r in rows]
    q = f"INSERT OR REPLACE INTO results ({', '.join(_COLUMNS)}) VALUES ({','.join('?' * len(_COLUMNS))})"
    conn.executemany(q, values)


def _book(conn: sqlite3.Connection, spends: list[dict]) -> None:
    now = time.time()
    conn.executemany(
        "INSERT INTO spend (key, prompt_tokens, completion_tokens, cost_usd, source, created_at) VALUES (?, ?, ?, ?, ?, ?)",
        [
            (s.get("key"), s.get("prompt_tokens") or 0, s.get("completion_tokens") or 0, s.get("cost_usd") or 0.0,
             s.get("source"), now)
            for s in spends
        ],
    )  # fmt: skip


def _migrate(conn: sqlite3.Connection) -> None:
    """Caches written before the ledger: add the logprobs column, book the answers already paid for."""
    columns = {r[1] for r in conn.execute("PRAGMA table_info(results)")}
    conn.execute("BEGIN IMMEDIATE")
    try:
        if conn.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:  # another process may have won
            if "logprobs" not in columns:
                conn.execute("ALTER TABLE results ADD COLUMN logprobs TEXT")
            if conn.execute("SELECT COUNT(*) FROM spend").fetchone()[0] == 0:
                conn.execute(
                    "INSERT INTO spend (key, prompt_tokens, completion_tokens, cost_usd, source, created_at)"
                    " SELECT key, prompt_tokens, completion_tokens, cost_usd, source, created_at FROM results"
                )
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _alive(pid: int) -> bool:
    import os

    if not isinstance(pid, int) or pid <= 0:
        return True  # never signal a group or "every process"; an odd pid is left for the age limit
    try:
        os.kill(pid, 0)  # signal 0: existence check only, nothing is sent
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
