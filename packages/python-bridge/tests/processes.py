"""Whether a server process and its process group still run (Linux reads /proc)."""

from __future__ import annotations

import os
from pathlib import Path


def living_group_members(pgid: int) -> list[int]:
    """Processes of the group that still run. Zombies are dead: the server's own children (its
    chat-template sandbox) are reaped by init a moment after the server exits."""
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
            return [pgid]
        except ProcessLookupError:
            return []
    living = []
    for stat_file in proc.glob("[0-9]*/stat"):
        try:
            stat = stat_file.read_text()
        except OSError:
            continue  # it exited while we looked
        # pid (comm) state ppid pgrp ...; comm may hold spaces and parentheses.
        state, _ppid, pgrp = stat[stat.rindex(")") + 2 :].split()[:3]
        if int(pgrp) == pgid and state not in ("Z", "X"):
            living.append(int(stat_file.parent.name))
    return living


def process_gone(pid: int) -> bool:
    """True when the server `pid` and every process of its group (the same id) have ended."""
    return not living_group_members(pid)
