"""Where the `mistralrs-server` command is: the argv that starts it.

In order: an explicit `server_command`, the `MISTRALRS_SERVER` environment variable, the
command of a checkout or of installed Node packages found upward from this package and from
the current directory, and `mistralrs-server` on PATH.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path

from .errors import MistralRsError

ServerCommand = str | os.PathLike[str] | Sequence[str]
ENV_VAR = "MISTRALRS_SERVER"
# Relative to a folder on the way up: this repository's CLI, or the CLI as an installed Node package.
_CANDIDATES = (
    Path("packages/cli/bin/mistralrs-server.js"),
    Path("node_modules/@mistralrs/cli/bin/mistralrs-server.js"),
)


def find_server_command(explicit: ServerCommand | None = None) -> list[str]:
    """The argv prefix that runs `mistralrs-server`; raises `MistralRsError` saying where it looked."""
    if explicit is not None:
        return _as_argv(explicit, "server_command")
    from_env = os.environ.get(ENV_VAR)
    if from_env:
        return _as_argv(from_env, ENV_VAR)
    starts = [Path(__file__).resolve().parent, Path.cwd().resolve()]
    script = next(iter(_scripts_upward(starts)), None)
    if script is not None:
        return [_node(), str(script)]
    on_path = shutil.which("mistralrs-server")
    if on_path:
        return [on_path]
    raise MistralRsError(
        "mistralrs-server not found: pass Runner(server_command=...), set "
        f"{ENV_VAR}=/path/to/packages/cli/bin/mistralrs-server.js, run from inside the mistralrs-ts "
        "checkout, or put mistralrs-server on PATH (looked upward from " + " and ".join(str(s) for s in starts) + ")"
    )


def pull_model(model_id: str | None = None, *, server_command: ServerCommand | None = None) -> Path:
    """Fetches a registry model into the cache (`mistralrs-server pull`) and returns its file's path.

    Without `model_id`, the default model. The path suits `Which.GGUF(quantized_model_id=...)`.
    """
    argv = find_server_command(server_command) + ["pull"] + ([model_id] if model_id else [])
    done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise MistralRsError(f"{' '.join(argv)} exited with code {done.returncode}: {done.stderr.strip()}")
    lines = done.stdout.strip().splitlines()
    if not lines:
        raise MistralRsError(f"{' '.join(argv)} printed no path")
    return Path(lines[-1])


def _as_argv(command: ServerCommand, where: str) -> list[str]:
    """A path (a `.js` file runs with node) or a full argv."""
    if isinstance(command, (str, os.PathLike)):
        path = os.fspath(command)
        if path.endswith(".js"):
            if not Path(path).is_file():
                raise MistralRsError(f"{where}: no such file {path}")
            return [_node(), path]
        return [path]
    argv = [str(part) for part in command]
    if not argv:
        raise MistralRsError(f"{where} is empty")
    return argv


def _scripts_upward(starts: Iterable[Path]) -> Iterable[Path]:
    for start in starts:
        for folder in (start, *start.parents):
            for candidate in _CANDIDATES:
                script = folder / candidate
                if script.is_file():
                    yield script


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        raise MistralRsError("node not found on PATH: mistralrs-server is a Node program (Node 20 or later)")
    return node
