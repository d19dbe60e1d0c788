"""Per-task LLM answer caches and spend ledgers on any fsspec path: no shared sqlite, no file lock.

On a cluster, N tasks on N machines share no lock, so each task attempt writes its own JSON-lines
files under one folder (``s3://...``, a local path, ``memory://`` in tests)::

    FOLDER/{run}-{rank:05d}-{attempt}-{segment:05d}.jsonl

Records (one JSON object a line): ``answer`` (a cached answer with its billed tokens and cost),
``spend`` (billed without a usable answer), ``claim`` (budget this attempt may spend, written
*before* any of it is spent) and ``settle`` (the attempt ended cleanly). A reader merges every file
of every run: reruns answer from all of them, whichever task or machine wrote them.

The budget stays a hard cap without a lock:

1. A run (one launch of a stage; its id is fixed in the driver and pickled into every task) sees the
   ledger of *earlier* runs only: they are over, so every task of the run reads the same numbers.
   What an earlier attempt is charged: its recorded spend if it settled, else the larger of its
   claims and its recorded spend (a killed attempt may have paid for requests in flight it never
   recorded, but never more than it claimed). So the unspent part of a settled attempt's slice is
   handed back to later runs; a killed attempt's claim is not.
2. The run's remaining budget ``budget - charged`` is cut into one deterministic slice per rank
   (:func:`budget_slices`: the ranks' unanswered requests funded in turns at their worst case):
   the slices sum to at most the remaining budget, so N tasks that never talk to each other cannot
   spend more than it together. A task whose answers cost less than their worst case spends the
   difference on further requests of its own; what it leaves unspent goes back at the next run.
3. A rank's slice, less what its earlier attempts in the same run were charged, is the attempt's
   allowance. Requests reserve their worst case against it in memory; the attempt claims more of
   its allowance, durably, before a reservation could exceed what it has claimed.

Durability: local files are flushed after every line (a SIGKILL loses only requests in flight);
object stores only show a file once it is closed, so a segment is closed after every claim and
every ``roll_every`` lines, and an unfinished segment of a killed task (at most ``roll_every``
answers) is lost to the cache but never to the budget (its claim was closed first).
Concurrent runs over the same folder (two drivers at once) are outside this design: the recipe
engine's output lock prevents them on one machine.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

CLAIM_FRACTION = 0.125  # a claim takes at least this share of the allowance: few durable writes


def new_run_id() -> str:
    """A sortable id for one run of a stage (time first, then randomness).

    >>> len(new_run_id()) == 21 and new_run_id()[:8].isdigit()
    True
    """
    return time.strftime("%Y%m%d%H%M%S", time.gmtime()) + uuid.uuid4().hex[:7]


def _name(run_id: str, rank: int, attempt: str, segment: int) -> str:
    return f"{run_id}-{rank:05d}-{attempt}-{segment:05d}.jsonl"


def _parse_name(path: str) -> tuple[str, int, str] | None:
    parts = path.rsplit("/", 1)[-1].removesuffix(".jsonl").split("-")
    if len(parts) != 4 or not parts[1].isdigit():
        return None
    return parts[0], int(parts[1]), parts[2]


@dataclass
class _Attempt:
    claimed: float = 0.0
    spent: float = 0.0
    settled: bool = False

    @property
    def charged(self) -> float:
        return self.spent if self.settled else max(self.claimed, self.spent)


@dataclass
class LedgerSnapshot:
    """What a folder of task caches holds: where each answer is, what every attempt is charged.

    ``attempts`` maps ``(run, rank, attempt)`` to its claims and spend; ``unreadable`` counts lines
    that do not parse (the torn last line of a killed task).
    """

    locations: dict[str, tuple[str, int, int]] = field(default_factory=dict)
    attempts: dict[tuple[str, int, str], _Attempt] = field(default_factory=lambda: defaultdict(_Attempt))
    unreadable: int = 0

    def charged(self, exclude_run: str | None = None) -> float:
        """Budget charged by every attempt of every run except ``exclude_run``."""
        return sum(a.charged for (run, _, _), a in self.attempts.items() if run != exclude_run)

    def charged_to(self, run_id: str, rank: int) -> float:
        """Budget charged by the earlier attempts of one rank in one run (a retried task)."""
        return sum(a.charged for (run, r, _), a in self.attempts.items() if run == run_id and r == rank)

    def answered_before(self, key: str, run_id: str) -> bool:
        """Whether ``key`` was answered by a run other than ``run_id``: the same for every task of that
        run whenever it reads (answers its own run adds meanwhile do not count)."""
        loc = self.locations.get(key)
        return loc is not None and _parse_name(loc[0])[0] != run_id

    def spent(self) -> dict:
        """``{"cost_usd", "answers"}`` over every file: what the provider billed, as recorded."""
        return {"cost_usd": sum(a.spent for a in self.attempts.values()), "answers": len(self.locations)}


def read_ledger(folder: str, wanted: Iterable[str] | None = None) -> LedgerSnapshot:
    """Scan every task cache file under ``folder`` (streaming): answer locations (only the keys in
    ``wanted`` when given) and every attempt's claims, spend and settlement.

    >>> import fsspec; fs = fsspec.filesystem("memory")
    >>> with fs.open("/doc_ledger/r1-00000-a-00000.jsonl", "w") as f:
    ...     _ = f.write('{"t": "claim", "usd": 2.0}\\n{"t": "answer", "key": "k", "cost_usd": 0.5}\\n')
    >>> snap = read_ledger("memory://doc_ledger"); snap.charged(), snap.charged(exclude_run="r1")
    (2.0, 0)
    """
    from fsspec.core import url_to_fs

    fs, root = url_to_fs(folder)
    snap = LedgerSnapshot()
    wanted = set(wanted) if wanted is not None else None
    paths = sorted(fs.glob(f"{root.rstrip('/')}/*.jsonl")) if fs.exists(root) else []
    for path in paths:
        ident = _parse_name(path)
        if ident is None:
            continue
        attempt = snap.attempts[ident]
        with fs.open(path, "rb") as f:
            offset = 0
            for line in f:
                _read_record(line, path, offset, attempt, snap, wanted)
                offset += len(line)
    return snap


def _read_record(
    line: bytes, path: str, offset: int, attempt: _Attempt, snap: LedgerSnapshot, wanted
) -> None:
    try:
        rec = json.loads(line)
        kind = rec["t"]
    except (ValueError, KeyError, TypeError):
        snap.unreadable += 1  # a torn line: its request is simply not cached (and was charged by the claim)
        return
    if kind == "claim":
        attempt.claimed += float(rec.get("usd") or 0.0)
    elif kind == "settle":
        attempt.settled = True
    elif kind in ("answer", "spend"):
        attempt.spent += float(rec.get("cost_usd") or 0.0)
        if kind == "answer" and (wanted is None or rec.get("key") in wanted):
            # the earliest answer wins (files are read in run order): see answered_before
            snap.locations.setdefault(rec["key"], (path, offset, len(line)))


def budget_slices(remaining_usd: float, costs: list[list[float]]) -> list[float]:
    """Cut ``remaining_usd`` into one slice per rank: ``costs[r]`` are the worst-case costs of rank
    ``r``'s unanswered requests in order; they are funded in turns (each rank's first, then each
    rank's second, ...) until the next one does not fit. Deterministic, and the slices sum to at most
    ``remaining_usd``, so tasks that never talk to each other stay under it together.

    >>> budget_slices(10.0, [[3, 3, 3], [4], []])
    [6.0, 4.0, 0.0]
    >>> budget_slices(2.0, [[3], [1]])  # rank 0's first request does not fit: funding stops there
    [0.0, 0.0]
    """
    slices = [0.0] * len(costs)
    left = max(0.0, remaining_usd)
    for turn in range(max((len(c) for c in costs), default=0)):
        for rank, rank_costs in enumerate(costs):
            if turn >= len(rank_costs):
                continue
            if rank_costs[turn] > left + 1e-12:
                return slices
            slices[rank] += rank_costs[turn]
            left -= rank_costs[turn]
    return slices


class TaskCache:
    """One task attempt's answer cache and spend ledger; reads every attempt's answers, writes its own.

    It offers the interface :class:`curate.llm.LLMClient` uses of its sqlite cache (``get_many``,
    ``reserve``, ``settle``, ``spent``...), so ``LLMClient(config, cache=TaskCache(...))`` runs
    unchanged on it; the client's ``budget_usd`` is then this attempt's allowance.

    >>> cache = TaskCache("memory://doc_tc", run_id="r1", rank=0)
    >>> cache.reserve("t", 0.5, budget_usd=1.0)[0], cache.reserve("u", 0.6, budget_usd=1.0)[0]
    (True, False)
    >>> cache.settle("t", {"key": "k", "cost_usd": 0.2}, {"key": "k", "text": "hi"}); cache.close()
    >>> TaskCache("memory://doc_tc", run_id="r2", rank=0).get_many(["k"])["k"]["text"]
    'hi'
    >>> read_ledger("memory://doc_tc").charged()  # settled: only what was spent is charged
    0.2
    """

    def __init__(self, folder: str, run_id: str, rank: int, roll_every: int = 256,
                 snapshot: LedgerSnapshot | None = None):  # fmt: skip
        from fsspec.core import url_to_fs

        self.folder, self.run_id, self.rank, self.roll_every = folder.rstrip("/"), run_id, rank, roll_every
        self.fs, self.root = url_to_fs(self.folder)
        self.local = "file" in (
            self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,)
        )
        self.attempt = uuid.uuid4().hex[:12]
        self._snapshot = snapshot
        self._lock = threading.RLock()
        self._file, self._segment, self._lines, self._offset = None, -1, 0, 0
        self._fresh: dict[str, tuple[str, int, int]] = {}
        self._held: dict[str, float] = {}
        self.claimed = self.spent_usd = 0.0
        self.answers = 0

    # ------------------------------------------------------------------ reading
    @property
    def snapshot(self) -> LedgerSnapshot:
        if self._snapshot is None:
            self._snapshot = read_ledger(self.folder)
        return self._snapshot

    def get_many(self, keys: Iterable[str]) -> dict[str, dict]:
        """Cached answers of ``keys`` (from every run's files and this attempt's)."""
        with self._lock:
            where = {}
            for key in dict.fromkeys(keys):
                loc = self._fresh.get(key) or self.snapshot.locations.get(key)
                if loc is not None:
                    where[key] = loc
            if self._file is not None and any(loc[0] == self._path() for loc in where.values()):
                self._roll()  # the open segment is not readable on an object store until closed
        out: dict[str, dict] = {}
        by_path: dict[str, list] = defaultdict(list)
        for key, (path, offset, length) in where.items():
            by_path[path].append((key, offset, length))
        for path, items in by_path.items():
            with self.fs.open(path, "rb") as f:
                for key, offset, length in sorted(items, key=lambda x: x[1]):
                    f.seek(offset)
                    rec = json.loads(f.read(length))
                    rec.pop("t", None)
                    out[key] = rec
        return out

    def __len__(self) -> int:
        return len(self.snapshot.locations) + len(self._fresh)

    def __bool__(self) -> bool:
        return True

    # ------------------------------------------------------------------ writing
    def _path(self) -> str:
        return f"{self.root}/{_name(self.run_id, self.rank, self.attempt, self._segment)}"

    def _roll(self) -> None:
        if self._file is not None:
            self._file.close()
        self._segment += 1
        self.fs.makedirs(self.root, exist_ok=True)
        self._file, self._lines, self._offset = self.fs.open(self._path(), "wb"), 0, 0

    def _write(self, record: dict, durable: bool = False) -> tuple[str, int, int]:
        if self._file is None or self._lines >= self.roll_every:
            self._roll()
        line = (json.dumps(record, ensure_ascii=False) + "\n").encode()
        loc = (self._path(), self._offset, len(line))
        self._file.write(line)
        self._file.flush()  # local files: on disk for the OS, so a killed process keeps it
        self._lines, self._offset = self._lines + 1, self._offset + len(line)
        if durable and not self.local:
            self._roll()  # object stores: a claim must exist before anything is spent under it
        return loc

    def reserve(self, token: str, usd: float, budget_usd: float) -> tuple[bool, float, float]:
        """Hold ``usd`` of this attempt's allowance ``budget_usd``; claim more of it first when needed.
        -> (reserved, allowance left after spend and holds, holds before this one)."""
        with self._lock:
            held = sum(self._held.values())
            left = budget_usd - self.spent_usd - held
            if usd > left + 1e-12:
                return False, left, held
            need = self.spent_usd + held + usd
            if need > self.claimed + 1e-12:
                more = min(budget_usd - self.claimed, max(need - self.claimed, budget_usd * CLAIM_FRACTION))
                self._write({"t": "claim", "usd": more}, durable=True)
                self.claimed += more
            self._held[token] = usd
            return True, left - usd, held

    def settle(self, token: str | None, spend: dict | None = None, row: dict | None = None) -> None:
        """Drop reservation ``token``; record a billed answer (``row`` + ``spend``) or a bare spend."""
        with self._lock:
            if token:
                self._held.pop(token, None)
            cost = float((spend or {}).get("cost_usd") or 0.0)
            if row is not None:
                rec = {"t": "answer", **row, "cost_usd": cost if spend else 0.0,
                       "prompt_tokens": row.get("prompt_tokens") or 0}  # fmt: skip
                self._fresh[row["key"]] = self._write(rec)
                self.answers += 1
            elif spend:
                self._write({"t": "spend", **spend})
            if spend:
                self.spent_usd += cost

    def put_many(self, rows: list[dict], book: bool = False) -> None:
        for row in rows:
            self.settle(None, row if book else None, row)

    def spent(self) -> dict:
        """What this attempt spent (``cost_usd``) and answered (``answers``)."""
        return {
            "cost_usd": self.spent_usd,
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "answers": self.answers,
        }

    def drop_stale_reservations(self, max_age_s: float = 0) -> int:
        return 0  # reservations live in memory and die with the process; a dead attempt's claim is charged

    def open_batches(self) -> list[str]:
        return []

    def record_batch(self, *args, **kwargs) -> None:
        raise ValueError("the Batch API needs the sqlite cache (the synth job), not per-task caches")

    def close(self, settle: bool = True) -> None:
        """End the attempt: with ``settle`` its unspent claim is handed back to later runs."""
        with self._lock:
            if settle and (self._file is not None or self.claimed):
                self._write({"t": "settle", "spent_usd": self.spent_usd, "claimed_usd": self.claimed})
            if self._file is not None:
                self._file.close()
                self._file = None

    def __getstate__(self) -> dict:  # open files do not pickle; a task builds its own cache
        raise TypeError("TaskCache is built inside a task; pass its folder instead")
