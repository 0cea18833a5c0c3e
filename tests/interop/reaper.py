"""Run a command as a child subreaper: exit only once every descendant is reaped.

Usage: python reaper.py PROGRAM [ARGS...]

Chromium's browser process exits on SIGTERM without waiting for its renderer, GPU and
zygote processes; they are reparented to PID 1 and linger as zombies until it reaps
them. Marked as a child subreaper (prctl PR_SET_CHILD_SUBREAPER), this process
inherits them instead, reaps them all, and only then exits with the program's status.
So when its parent sees it exit, no process of the tree is left, not even a zombie.

SIGTERM sent to the process group reaches the program and its children; this process
survives it to finish reaping. SIGKILL still ends it (then PID 1 reaps the rest).
If the parent dies (a test run killed hard), the kernel sends this process SIGHUP
(PR_SET_PDEATHSIG) and it terminates the group, so no Chromium outlives its test run.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36


def _terminate_group(_sig: int = 0, _frame: object = None) -> None:
    """SIGTERM our process group (the program and its children; we survive it)."""
    try:
        os.killpg(0, signal.SIGTERM)
    except ProcessLookupError:
        pass


def main(argv: list[str]) -> int:
    """Spawn argv, reap every descendant, return the program's exit code."""
    if not argv:
        print("usage: reaper.py PROGRAM [ARGS...]", file=sys.stderr)
        return 2
    # Handlers, not SIG_IGN, so the program gets default dispositions again at exec.
    # Installed before PR_SET_PDEATHSIG so that an early SIGHUP cannot kill us.
    signal.signal(signal.SIGTERM, lambda _sig, _frame: None)
    signal.signal(signal.SIGHUP, _terminate_group)
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    parent = os.getppid()
    for option, value in ((PR_SET_CHILD_SUBREAPER, 1), (PR_SET_PDEATHSIG, signal.SIGHUP)):
        if libc.prctl(option, int(value), 0, 0, 0) != 0:
            print(f"reaper: prctl failed: {os.strerror(ctypes.get_errno())}", file=sys.stderr)
    child = os.fork()
    if child == 0:
        try:
            os.execvp(argv[0], argv)
        finally:
            os._exit(127)
    if os.getppid() != parent:  # the parent died before PR_SET_PDEATHSIG took effect
        _terminate_group()
    code = 0
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            return code
        if pid == child:
            code = os.waitstatus_to_exitcode(status)
            code = code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
