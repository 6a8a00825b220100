"""The runner's server lifecycle: started on a free port, stopped with its whole process group
on close, at the end of a `with` block (raising or not), on garbage collection, at interpreter
exit and when a test fails; a server that fails to start says why and is not left running."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from mistralrs import APIConnectionError, AuthenticationError, ChatCompletionRequest, Runner, ServerStartError, Which
from mistralrs.server_process import ServerOptions, ServerProcess
from processes import is_running, living_group_members, process_gone

HI = [{"role": "user", "content": "Hi!"}]
FAKE_SERVER = [sys.executable, str(Path(__file__).parent / "fixtures" / "fake_server.py")]


def say_hi(runner: Runner) -> None:
    """A chat request: the server renders a chat template, which starts its sandbox process."""
    runner.send_chat_completion_request(ChatCompletionRequest(messages=HI, max_tokens=2))


def read_pids(pid_file: Path) -> tuple[int, int]:
    server, child = pid_file.read_text().split()
    return int(server), int(child)


def gone(pids: list[int]) -> bool:
    return all(process_gone(pid) for pid in pids)


def running(pids: list[int]) -> bool:
    return all(is_running(pid) for pid in pids)


def test_close_stops_the_server_and_its_group_and_an_api_key_is_required() -> None:
    runner = Runner(api_key="sk-lifecycle")
    pid = runner.server_pid
    assert pid is not None and runner.health()["status"] == "ok"
    say_hi(runner)
    assert "--api-key" in (runner.server_argv or [])
    with pytest.raises(AuthenticationError) as caught:
        Runner(base_url=runner.base_url, api_key="wrong").list_models()
    assert (caught.value.status, caught.value.code) == (401, "invalid_api_key")
    runner.close()
    assert runner.closed and process_gone(pid), f"left behind: {living_group_members(pid)}"
    runner.close()  # a second close is harmless


def test_a_raising_with_block_stops_the_server() -> None:
    pid = None
    with pytest.raises(RuntimeError, match="the block failed"):
        with Runner() as runner:
            pid = runner.server_pid
            say_hi(runner)
            raise RuntimeError("the block failed")
    assert pid is not None and process_gone(pid), f"left behind: {living_group_members(pid)}"


def test_garbage_collection_stops_the_server() -> None:
    runner = Runner()
    pid = runner.server_pid
    assert pid is not None and living_group_members(pid)
    del runner
    gc.collect()
    assert process_gone(pid), f"left behind: {living_group_members(pid)}"


def test_interpreter_exit_stops_a_server_nobody_closed(tmp_path: Path) -> None:
    script = tmp_path / "forgets_to_close.py"
    script.write_text(
        textwrap.dedent(
            """
            from mistralrs import ChatCompletionRequest, Runner
            runner = Runner()
            hi = [{"role": "user", "content": "Hi!"}]
            runner.send_chat_completion_request(ChatCompletionRequest(messages=hi, max_tokens=2))
            print(runner.server_pid, flush=True)
            raise SystemExit("exits with the runner open")
            """
        )
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "exits with the runner open" in done.stderr
    pid = int(done.stdout.strip())
    assert process_gone(pid), f"left behind: {living_group_members(pid)}"


def test_a_failing_test_leaves_no_server_behind(pytester: pytest.Pytester, tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    pytester.makepyfile(
        test_fails=f"""
        from mistralrs import Runner

        def test_fails_with_a_runner_open():
            runner = Runner()
            open({str(pid_file)!r}, "w").write(str(runner.server_pid))
            assert runner.health()["status"] == "broken"
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    pid = int(pid_file.read_text())
    assert process_gone(pid), f"left behind: {living_group_members(pid)}"


def test_a_server_that_exits_at_start_says_why(tmp_path: Path) -> None:
    missing = tmp_path / "missing.gguf"
    with pytest.raises(ServerStartError) as caught:
        Runner(which=Which.GGUF(quantized_model_id=str(missing)))
    error = caught.value
    assert error.exit_code == 1
    assert str(missing) in error.output_tail
    assert "exited with code 1 before it was ready" in str(error) and error.output_tail in str(error)


def test_a_server_that_never_gets_ready_is_stopped_at_the_timeout(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    started = time.monotonic()
    with pytest.raises(ServerStartError, match="did not say it was listening within 1 s") as caught:
        Runner(server_command=FAKE_SERVER, env={"PID_FILE": str(pid_file), "NEVER_READY": "1"}, startup_timeout_s=1)
    assert time.monotonic() - started < 15
    assert "loading the fake model" in caught.value.output_tail
    pids = list(read_pids(pid_file))
    assert gone(pids), f"left behind: {[living_group_members(p) for p in pids]}"


def test_a_server_that_ignores_sigterm_is_killed_with_its_children(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    server = ServerProcess(
        FAKE_SERVER, ServerOptions(), env={"PID_FILE": str(pid_file), "IGNORE_SIGTERM": "1"}, stop_timeout_s=0.5
    )
    assert server.model_id == "fake" and server.url.startswith("http://127.0.0.1:")
    pids = list(read_pids(pid_file))
    assert server.running and running(pids)
    assert server.stop() == -9  # SIGKILL after the grace time
    assert gone(pids), f"left behind: {[living_group_members(p) for p in pids]}"


def test_closing_a_connected_runner_leaves_the_server_running(runner: Runner) -> None:
    connected = Runner(base_url=runner.base_url)
    assert connected.server_pid is None
    connected.close()
    assert runner.health()["status"] == "ok"


def test_a_request_to_a_server_that_died_says_so_with_its_last_lines(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    with Runner(server_command=FAKE_SERVER, env={"PID_FILE": str(pid_file)}) as runner:
        assert runner.health()["model"] == "fake"
        pids = list(read_pids(pid_file))
        os.killpg(pids[0], signal.SIGKILL)
        assert gone(pids)
        with pytest.raises(APIConnectionError, match="mistralrs-server exited with code -9") as caught:
            runner.health()
        assert "loading the fake model" in str(caught.value)
