"""The README's "change the import" example runs, as it is written there.

The code block after the marker comment in README.md is extracted and run in its own
process inside a network namespace with only `lo`, so the candidates it gathers (with
the default configuration) are on loopback. Needs root; under CI=true a missing
prerequisite fails instead of skipping.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from interop.netns import NetNs, netns_available
from prereq import require

pytestmark = [pytest.mark.netns]

README = Path(__file__).resolve().parent.parent / "README.md"
MARKER = "<!-- the block below runs as a test: tests/test_readme_example.py -->"


def readme_example() -> str:
    text = README.read_text()
    assert MARKER in text, "the README lost its runnable example's marker"
    after = text.split(MARKER, 1)[1].lstrip("\n")
    assert after.startswith("```python\n")
    return after.removeprefix("```python\n").split("\n```", 1)[0] + "\n"


def test_readme_example_uses_only_the_changed_import() -> None:
    code = readme_example()
    assert "from unbroken import RTCConfiguration, RTCPeerConnection" in code
    assert "from aiortc.contrib.signaling import" in code


def test_readme_example_runs(tmp_path: Path) -> None:
    require(netns_available())
    script = tmp_path / "example.py"
    script.write_text(readme_example())
    ns = NetNs.create(prefix="ubrd")
    try:
        done = subprocess.run(
            [*ns.exec_prefix(), sys.executable, str(script)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        ns.delete()
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout == "pong ping\n"
