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
)
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

    def put(self, row: dict) -> None:
        self.put_many([row])

    def put_many(self, rows: list[dict]) -> None:
        if not rows:
            return
        now = time.time()
        values = [tuple(r.get(c) if c != "created_at" else r.get(c, now) for c in _COLUMNS) for r in rows]
        q = f"INSERT OR REPLACE INTO results ({', '.join(_COLUMNS)}) VALUES ({','.join('?' * len(_COLUMNS))})"
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(q, values)
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

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
