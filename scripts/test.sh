#!/usr/bin/env bash
# Install everything the tests need on a fresh machine, then run every test.
# Debian packages (chromium, firefox-esr, coturn, redis-server, nftables, iproute2,
# conntrack) come from apt; Python ones
# into .venv. Browser and namespace tests need root; under CI=true they fail, not skip.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-test-deps.sh
python3 -m venv .venv
.venv/bin/pip install --quiet --disable-pip-version-check -e ".[test]"
.venv/bin/ruff check src tests benchmarks
.venv/bin/ruff format --check src tests benchmarks
.venv/bin/mypy
.venv/bin/python -m pytest -q "$@"
