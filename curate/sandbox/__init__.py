"""Isolated execution of untrusted Python: ``Sandbox(...).run(program, tests)`` and ``.map(jobs)``.

See :mod:`curate.sandbox.sandbox` for the isolation layers and the threat model.
"""

from curate.sandbox.sandbox import STATUSES, Sandbox, SandboxResult, isolation_probe

__all__ = ["Sandbox", "SandboxResult", "STATUSES", "isolation_probe"]
