"""Rate limiting and retry timing: token buckets for RPM/TPM, header parsing, backoff with jitter."""

from __future__ import annotations

import asyncio
import email.utils
import random
import re
import time

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")


def parse_duration_s(value: str | None) -> float | None:
    """Seconds in an OpenAI reset header: "20ms", "1s", "6m0s", "1h2m3.5s", or a bare number of seconds."""
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    parts = _DURATION.findall(value)
    if not parts:
        return None
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    return sum(float(n) * scale[u] for n, u in parts)


def retry_after_s(headers) -> float | None:
    """The server's requested wait: ``retry-after-ms``, ``Retry-After`` (seconds or HTTP date), else
    the longest ``x-ratelimit-reset-*`` value. None when the response says nothing."""
    if not headers:
        return None
    get = headers.get
    if get("retry-after-ms"):
        try:
            return max(0.0, float(get("retry-after-ms")) / 1000.0)
        except ValueError:
            pass
    ra = get("retry-after")
    if ra:
        try:
            return max(0.0, float(ra))
        except ValueError:
            try:
                return max(0.0, email.utils.parsedate_to_datetime(ra).timestamp() - time.time())
            except (TypeError, ValueError):
                pass
    resets = [parse_duration_s(get(h)) for h in ("x-ratelimit-reset-requests", "x-ratelimit-reset-tokens")]
    resets = [r for r in resets if r is not None]
    return max(resets) if resets else None


def proactive_pause_s(headers) -> float | None:
    """When a successful response says a limit is exhausted (remaining == 0), how long to hold off."""
    if not headers:
        return None
    waits = []
    for kind in ("requests", "tokens"):
        remaining = headers.get(f"x-ratelimit-remaining-{kind}")
        if remaining is not None and remaining.strip() == "0":
            w = parse_duration_s(headers.get(f"x-ratelimit-reset-{kind}"))
            if w:
                waits.append(w)
    return max(waits) if waits else None


def backoff_s(attempt: int, base_s: float, max_s: float, rng: random.Random) -> float:
    """Exponential backoff with 'equal jitter': half fixed, half random, so retries spread out."""
    d = min(max_s, base_s * (2**attempt))
    return d / 2 + rng.uniform(0, d / 2)


class TokenBucket:
    """Async token bucket refilled at ``per_minute / 60`` per second; ``None`` = unlimited.

    The bucket holds at most one second's worth (so a fresh client does not burst a whole minute's
    quota at once). A request larger than that waits for a full bucket and then leaves the bucket in
    debt, so the long-run rate stays exact even for oversized requests.
    """

    def __init__(self, per_minute: float | None):
        self.rate = float(per_minute) / 60.0 if per_minute else None
        self.capacity = max(1.0, self.rate) if self.rate else 0.0
        self.tokens = self.capacity
        self.updated = time.monotonic()
        self._lock = asyncio.Lock()

    async def acquire(self, amount: float = 1.0) -> None:
        if self.rate is None:
            return
        need = min(amount, self.capacity)
        async with self._lock:  # FIFO: waiters are served in arrival order
            while True:
                now = time.monotonic()
                self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
                self.updated = now
                if self.tokens >= need:
                    self.tokens -= amount
                    return
                await asyncio.sleep((need - self.tokens) / self.rate)
