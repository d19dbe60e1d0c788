"""Synthesis at 1x, 4x and 16x prompts: the one-process ``generate_synth`` job (baseline) against the
stages (``SynthGenerator`` -> ``TextbookFilter`` -> shards on 4 local tasks, then the dedup reduce),
both against the OpenAI-protocol test server (tests/openai_server.py) on 127.0.0.1.

Every configuration runs in its own subprocess: wall time, documents/s (prompts through generation,
validation and dedup), peak RSS of the job's process, and for the stages the peak RSS of each task
(``ru_maxrss`` read by a last pipeline step in the task's process) and of the reduce job.

    python benchmarks/bench_scale_synth.py [BASE_PROMPTS]     # default 100 -> 100, 400, 1600
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
mode, out, n, base_url = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
llm = {"base_url": base_url, "api_key_env": "BENCH_KEY", "model": "test-model", "max_concurrency": 16,
       "prices": {"test-model": {"input": 1.0, "output": 1.0}}, "budget_usd": 1000.0}
t0 = time.perf_counter()
if mode == "job":
    from synth.generate import generate_synth
    s = generate_synth("textbooks", out, n, llm=llm, workers=1)
    kept = s["kept"]
else:
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.base import PipelineStep
    from curate.shards import ExclusionWriter, ShardWriter
    from synth.stages import SynthGenerator, dedup_shards
    from synth.validate import TextbookFilter

    class PeakRSS(PipelineStep):
        name = "peak rss"
        def __init__(self, folder):
            super().__init__()
            self.folder = folder
        def run(self, data, rank=0, world_size=1):
            import os, resource
            yield from data
            os.makedirs(self.folder, exist_ok=True)
            with open(f"{self.folder}/{rank}.txt", "w") as f:
                f.write(str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))

    pipeline = [SynthGenerator("textbooks", n, str(out / "cache"), llm=llm),
                TextbookFilter(exclusion_writer=ExclusionWriter(str(out / "v/excluded/validate"), "validate")),
                ShardWriter(str(out / "v/data")), PeakRSS(str(out / "rss"))]
    LocalPipelineExecutor(pipeline, tasks=4, workers=4, logging_dir=str(out / "logs")).run()
    kept = dedup_shards(str(out / "v"), str(out / "final"))["kept"]
wall = time.perf_counter() - t0
tasks = [int(p.read_text()) for p in sorted((out / "rss").glob("*.txt"))] if mode == "stages" else []
print(json.dumps({"wall_s": wall, "kept": kept, "driver_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "task_rss_kb": tasks}))
"""


def responder(body: dict) -> str:
    """A passage with prose and a runnable code block, unique per prompt (no duplicates to drop)."""
    text = body["messages"][-1]["content"]
    h = abs(hash(text)) % 10_000
    return f"# Section {h}\nThis passage explains lists.\n```python\nitems = [{h}, 2, 3]\nprint(sum(items))\n```\nDone."


def run(mode: str, n: int, base_url: str, work: Path) -> dict:
    env = {**os.environ, "BENCH_KEY": "sk-bench", "PYTHONPATH": str(REPO), "PYTHONHASHSEED": "0"}
    proc = subprocess.run([sys.executable, "-c", CHILD, mode, str(work / f"{mode}-{n}"), str(n), base_url],
                          env=env, cwd=REPO, capture_output=True, text=True, timeout=3600)  # fmt: skip
    if proc.returncode:
        raise RuntimeError(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(base: int = 100) -> None:
    from openai_server import OpenAITestServer

    rows = []
    with OpenAITestServer(responder=responder) as srv, tempfile.TemporaryDirectory() as tmp:
        for scale in (1, 4, 16):
            n = base * scale
            job = run("job", n, srv.base_url, Path(tmp))
            stages = run("stages", n, srv.base_url, Path(tmp))
            assert job["kept"] == stages["kept"], (job, stages)  # the same documents either way
            rows.append((scale, n, job, stages))
            print(f"{scale:>3}x {n:>6} prompts | job: {job['wall_s']:7.1f} s {n / job['wall_s']:7.1f} docs/s "
                  f"peak {job['driver_rss_kb'] / 1024:6.0f} MB | stages (4 tasks): {stages['wall_s']:7.1f} s "
                  f"{n / stages['wall_s']:7.1f} docs/s, task peak {max(stages['task_rss_kb']) / 1024:6.0f} MB, "
                  f"driver+reduce peak {stages['driver_rss_kb'] / 1024:6.0f} MB | "
                  f"stages/job time {stages['wall_s'] / job['wall_s']:.2f}", flush=True)  # fmt: skip
    first, last = rows[0][3], rows[-1][3]
    print(f"task peak RSS 16x / 1x: {max(last['task_rss_kb']) / max(first['task_rss_kb']):.2f}; "
          f"job peak RSS 16x / 1x: {rows[-1][2]['driver_rss_kb'] / rows[0][2]['driver_rss_kb']:.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100)
