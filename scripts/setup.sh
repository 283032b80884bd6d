#!/usr/bin/env bash
# Creates .venv and installs the project with its test tools. torch is pinned to 2.13.0: on our CI
# machines that is a CPU build on local disk; an unpinned torch would pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[test]"
