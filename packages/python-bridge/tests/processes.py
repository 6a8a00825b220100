"""Whether a server process and its process group still run (Linux: read from /proc).

Zombies count as ended: they are dead, and the server's own children (its chat-template
sandbox) are reaped by init a moment after the server exits.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

_PROC = Path("/proc")


def _stat_fields(stat: str) -> tuple[str, int]:
    """(state, process group) from a /proc/PID/stat line; `comm` may hold spaces and parentheses."""
    state, _ppid, pgrp = stat[stat.rindex(")") + 2 :].split()[:3]
    return state, int(pgrp)


def is_running(pid: int) -> bool:
    """The process exists and is not a zombie."""
    if not _PROC.is_dir():
        try:
            os.kill(pid, 0)
            return True
        except ProcessLookupError:
            return False
    try:
        state, _ = _stat_fields((_PROC / str(pid) / "stat").read_text())
    except OSError:
        return False
    return state not in ("Z", "X")


def living_group_members(pgid: int) -> list[int]:
    """Processes of the group `pgid` that still run."""
    if not _PROC.is_dir():
        try:
            os.killpg(pgid, 0)
            return [pgid]
        except ProcessLookupError:
            return []
    living = []
    for stat_file in _PROC.glob("[0-9]*/stat"):
        try:
            state, pgrp = _stat_fields(stat_file.read_text())
        except OSError:
            continue  # it exited while we looked
        if pgrp == pgid and state not in ("Z", "X"):
            living.append(int(stat_file.parent.name))
    return living


def process_gone(pid: int, timeout_s: float = 5.0) -> bool:
    """True once process `pid` and every process of the group it leads have ended.

    Waits up to `timeout_s`: a signal is delivered asynchronously, so a process killed a moment
    ago may not have died yet; anything still running after that was left behind.
    """
    deadline = time.monotonic() + timeout_s
    while is_running(pid) or living_group_members(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
