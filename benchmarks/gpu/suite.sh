#!/usr/bin/env bash
# The GPU suite in one command (see benchmarks/gpu/suite.py): run from anywhere, no install needed.
#   bash benchmarks/gpu/suite.sh            # on the GPU machine; results in $OUT or ./gpu_suite_out
#   bash benchmarks/gpu/suite.sh --smoke    # CPU, tiny preset (CI)
# PYTHON picks the interpreter (default: python3); SUITE_DEADLINE_S bounds the whole run.
set -u
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
export TOKENIZERS_PARALLELISM=false
cd "$REPO"
exec "${PYTHON:-python3}" "$REPO/benchmarks/gpu/suite.py" "$@"
