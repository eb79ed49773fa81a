#!/usr/bin/env bash
# Create (or update) the project's virtual environment idempotently.
# Why a script: learn2learn 0.2.0 cannot be a plain dependency (its metadata pulls qpth/gsutil and
# downgrades numpy below 2, and its sdist must re-run Cython to build on Python 3.11).
set -euo pipefail
VENV=${1:-.venv}
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
"$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11), "learngene-bench needs Python 3.11"' \
  || { echo "error: Python 3.11 is required (found $("$PYTHON" --version 2>&1)); set PYTHON=/path/to/python3.11" >&2; exit 2; }
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP="$VENV/bin/python -m pip"
$PIP install -q --upgrade "pip>=24" >/dev/null
# torch first, pinned, so nothing later pulls another build.
$PIP install -q torch==2.14.1 torchvision==0.29.1
$PIP install -q cython gym "setuptools>=70.1" wheel
if ! "$VENV/bin/python" -c 'import learn2learn' >/dev/null 2>&1; then
  $PIP install -q --use-pep517 --no-deps --no-build-isolation \
    --config-settings=--build-option=build_ext learn2learn==0.2.0
fi
$PIP install -q -e ".[dev,ray]"
"$VENV/bin/python" -c 'import torch, torchvision, learn2learn, timm, ot, seaborn; print("environment ready: torch", torch.__version__)'
