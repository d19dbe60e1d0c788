"""Shared pytest setup: puts ``tests/`` on sys.path (for ``from openai_server import ...``) and
provides the ``openai_server`` fixture (a factory for local OpenAI-protocol test servers)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

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
