"""pytest setup for the doctests of the packages (``--doctest-modules``): each runs in its own temporary
directory, so an example that writes ``out/...`` never writes into the repository."""

import pytest


@pytest.fixture(autouse=True)
def _doctests_run_in_a_temporary_directory(request, tmp_path, monkeypatch):
    if isinstance(request.node, pytest.DoctestItem):
        monkeypatch.chdir(tmp_path)
