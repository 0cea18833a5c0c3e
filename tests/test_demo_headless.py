"""`unbroken demo --headless`, run as the README runs it: a subprocess, exit code 0, the
timeline and the healing time printed, every message delivered once, in order.

`--fault process` needs nothing but Python (the path is dropped inside the process);
`--fault netns` needs root, `ip` and `nft` (the demo makes its own namespace, and the
test checks that it is gone afterwards)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from netns_pc import require_fault_ns


def run_demo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "unbroken.cli", "demo", "--headless", *args],
        capture_output=True,
        text=True,
        timeout=90,
    )


def healing_times(output: str) -> dict[str, float]:
    """{fault label: healing time in ms} from the summary lines."""
    return {m[0]: float(m[1]) for m in re.findall(r"^(\w[\w ]*): healed in (\d+) ms", output, re.M)}


def test_headless_demo_in_process() -> None:
    proc = run_demo("--fault", "process")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    # The path is silent for 1.5 s (PathSilent) before it would be `disconnected` at 2.5 s.
    assert re.search(r"recovery: restart ICE \(attempt 1, (silent|disconnected)\)", out), out
    assert "recovery: healed after" in out
    assert set(healing_times(out)) == {"dropped path"}, out
    assert re.search(r"alice -> bob: \d+ messages sent, all delivered once, in order", out)
    assert re.search(r"bob -> alice: \d+ messages sent, all delivered once, in order", out)
    assert out.rstrip().endswith("healed: yes, nothing lost")


@pytest.mark.netns
def test_headless_demo_in_a_namespace() -> None:
    require_fault_ns()
    proc = run_demo("--fault", "netns")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    name = re.search(r"namespace (ubdemo-\S+):", out)
    assert name is not None, out
    assert re.search(
        r"recovery: restart ICE \(attempt 1, network: address removed: 10\.99\.0\.1", out
    )
    assert re.search(r"selected pair 10\.99\.0\.7:\d+ -> 10\.99\.1\.1:\d+ \(generation 1\)", out)
    assert set(healing_times(out)) == {"handover", "outage"}, out
    assert out.rstrip().endswith("healed: yes, nothing lost")
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert name.group(1) not in listed
