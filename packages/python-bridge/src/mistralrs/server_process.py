"""A `mistralrs-server` the runner starts: launched on a free loopback port, ready once it says
where it listens and `/health` answers, stopped with its whole process group.

Stopping is a `weakref.finalize`, so it runs on `stop()`, when the object is garbage-collected,
and at interpreter exit, whichever comes first, and only once.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
import weakref
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO

from .errors import MistralRsError, ServerStartError
from .transport import HttpClient
from .which import ModelSelector, SpeculativeConfig, Which, flag_args

_LISTENING = re.compile(r"^listening on (?P<url>https?://\S+) \((?P<model>.*)\)$")
_OUTPUT_LINES_KEPT = 40
_POSIX = os.name == "posix"


@dataclass
class ServerOptions:
    """What the runner asks of the server it starts; each field is a `mistralrs-server` flag.

    `max_seqs` is `--max-running`; `prefix_cache_n=0` turns prefix caching off (other values
    leave it on: its size follows the KV cache); the `pa_*` fields are mistral.rs's flags.
    """

    which: ModelSelector = field(default_factory=Which.Default)
    api_key: str | None = None
    max_seqs: int | None = None
    max_waiting: int | None = None
    prefix_cache_n: int | None = None
    token_source: str | None = None
    chat_template: str | None = None
    pa_gpu_mem: float | None = None
    pa_gpu_mem_usage: float | None = None
    pa_ctxt_len: int | None = None
    pa_blk_size: int | None = None
    pa_cache_type: str | None = None
    speculative: SpeculativeConfig | None = None
    extra_args: Sequence[str] = ()

    def cli_args(self) -> list[str]:
        """The model subcommand and flags, after the command itself; the port is the launcher's."""
        args = list(self.which.cli_args()) + flag_args(
            ("--api-key", self.api_key),
            ("--max-running", self.max_seqs),
            ("--max-waiting", self.max_waiting),
            ("--token-source", self.token_source),
            ("--chat-template", self.chat_template),
            ("--pa-gpu-mem", self.pa_gpu_mem),
            ("--pa-gpu-mem-usage", self.pa_gpu_mem_usage),
            ("--pa-ctxt-len", self.pa_ctxt_len),
            ("--pa-blk-size", self.pa_blk_size),
            ("--pa-cache-type", self.pa_cache_type),
        )
        if self.prefix_cache_n == 0:
            args.append("--no-prefix-cache")
        if self.speculative is not None:
            args += self.speculative.cli_args()
        return args + list(self.extra_args)


class _OutputReader(threading.Thread):
    """Drains the server's output (so it never blocks on a full pipe), keeps the last lines, and
    notes the `listening on URL (MODEL)` line."""

    def __init__(self, pipe: IO[bytes]) -> None:
        super().__init__(name="mistralrs-server output", daemon=True)
        self._pipe = pipe
        self.lines: deque[str] = deque(maxlen=_OUTPUT_LINES_KEPT)
        self.listening = threading.Event()
        self.url: str | None = None
        self.model_id: str | None = None

    def run(self) -> None:
        with self._pipe:
            for raw in iter(self._pipe.readline, b""):
                line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
                self.lines.append(line)
                match = _LISTENING.match(line)
                if match and not self.listening.is_set():
                    self.url, self.model_id = match["url"], match["model"]
                    self.listening.set()

    def tail(self) -> str:
        return "\n".join(list(self.lines))


class ServerProcess:
    """A running `mistralrs-server --port 0`; `url` is its address, `pid` its process (and group)."""

    def __init__(
        self,
        command: Sequence[str],
        options: ServerOptions,
        *,
        env: Mapping[str, str] | None = None,
        startup_timeout_s: float = 300.0,
        stop_timeout_s: float = 10.0,
    ) -> None:
        self.argv: list[str] = [*command, *options.cli_args(), "--host", "127.0.0.1", "--port", "0"]
        try:
            popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=None if env is None else {**os.environ, **env},
                start_new_session=_POSIX,  # its own process group, stopped as a whole
            )
        except OSError as error:
            raise ServerStartError(f"could not run {self.argv[0]}: {error}") from error
        assert popen.stdout is not None
        self._popen = popen
        self._output = _OutputReader(popen.stdout)
        self._output.start()
        self._finalizer = weakref.finalize(self, _stop, popen, self._output, stop_timeout_s)
        self.pid: int = popen.pid
        try:
            self.url, self.model_id = self._wait_until_ready(startup_timeout_s)
        except BaseException:
            self.stop()
            raise

    def _wait_until_ready(self, timeout_s: float) -> tuple[str, str]:
        deadline = time.monotonic() + timeout_s
        while not self._output.listening.wait(0.05):
            if self._popen.poll() is not None:
                self._output.join(timeout=2)  # the last lines say why
                raise ServerStartError(
                    f"mistralrs-server exited with code {self._popen.returncode} before it was ready "
                    f"({' '.join(self.argv)})",
                    output_tail=self._output.tail(),
                    exit_code=self._popen.returncode,
                )
            if time.monotonic() > deadline:
                raise ServerStartError(
                    f"mistralrs-server did not say it was listening within {timeout_s:g} s ({' '.join(self.argv)})",
                    output_tail=self._output.tail(),
                )
        assert self._output.url is not None and self._output.model_id is not None
        url = self._output.url
        health = HttpClient(url, api_key=None, timeout_s=max(1.0, deadline - time.monotonic()))
        while True:
            try:
                health.get_json("/health")
                return url, self._output.model_id
            except MistralRsError as error:
                if self._popen.poll() is not None or time.monotonic() > deadline:
                    raise ServerStartError(
                        f"{url}/health did not answer: {error}", output_tail=self._output.tail()
                    ) from error
                time.sleep(0.1)

    @property
    def running(self) -> bool:
        return self._finalizer.alive and self._popen.poll() is None

    def output_tail(self) -> str:
        """The last lines the server printed."""
        return self._output.tail()

    def exit_note(self) -> str:
        """Empty while the server runs; after it exited, how and its last lines (for error messages)."""
        code = self._popen.poll()
        if code is None:
            return ""
        how = "was stopped" if not self._finalizer.alive else f"exited with code {code}"
        return f"mistralrs-server {how}; its last lines:\n{self._output.tail()}"

    def stop(self) -> int | None:
        """Stops the server (SIGTERM to its group, then SIGKILL after the grace time); its exit code."""
        self._finalizer()
        return self._popen.returncode


def _stop(popen: subprocess.Popen[bytes], output: _OutputReader, timeout_s: float) -> None:
    """Ends the server and anything it started. A module function: a finalizer must not hold `self`."""
    if popen.poll() is None:
        _signal(popen, signal.SIGTERM)
        try:
            popen.wait(timeout_s)
        except subprocess.TimeoutExpired:
            _signal(popen, signal.SIGKILL if _POSIX else signal.SIGTERM)
            popen.wait()
    if _POSIX:
        # Children the server may have left in its group.
        try:
            os.killpg(popen.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    output.join(timeout=2)


def _signal(popen: subprocess.Popen[bytes], sig: int) -> None:
    try:
        if _POSIX:
            os.killpg(popen.pid, sig)
        else:
            popen.send_signal(sig)
    except ProcessLookupError:
        pass  # it exited between the check and the signal
