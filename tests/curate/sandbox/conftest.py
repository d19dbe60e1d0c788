"""Fixtures shared by the sandbox tests: a Sandbox per module, and the proof that isolation is active
(hostile programs run only then)."""

import pytest

from curate.sandbox import Sandbox, isolation_probe


@pytest.fixture(scope="module")
def sb():
    box = Sandbox(timeout_s=5.0, memory_mb=512)
    yield box
    box.close()


@pytest.fixture(scope="module")
def active(sb):
    """The isolation probe; skips the test unless the program would run as a non-root uid, as PID 1 of
    its own PID namespace, in its own network namespace."""
    probe = isolation_probe(sb)
    if not probe["active"]:
        pytest.skip(f"hostile programs NOT run: sandbox isolation inactive here (probe: {probe})")
    return probe
