"""Missing prerequisites (root, Chromium, coturn...): skip locally, fail under CI=true."""

from __future__ import annotations

import os

import pytest

IN_CI = os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def require(problem: str | None) -> None:
    """Skip the test when `problem` names a missing prerequisite; under CI=true, fail it."""
    if problem is None:
        return
    if IN_CI:
        pytest.fail(f"prerequisite missing (CI=true, so this fails): {problem}", False)
    pytest.skip(problem)
