"""Which model and which options become which mistralrs-server arguments; where the command is."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mistralrs import (
    Architecture,
    MistralRsError,
    Runner,
    ServerOptions,
    SpeculativeConfig,
    Which,
    find_server_command,
)


def test_which_variants_are_the_cli_subcommands() -> None:
    assert Which.Default().cli_args() == []
    gguf = Which.GGUF(quantized_model_id="models", quantized_filename="m.gguf", tok_model_id="org/tok")
    assert gguf.cli_args() == ["gguf", "-m", "models", "-f", "m.gguf", "-t", "org/tok"]
    split = Which.GGUF(
        quantized_model_id="org/m-GGUF", quantized_filename=["m-00001-of-00002.gguf", "m-00002-of-00002.gguf"]
    )
    assert split.cli_args() == [
        "gguf",
        "-m",
        "org/m-GGUF",
        "-f",
        "m-00001-of-00002.gguf",
        "-f",
        "m-00002-of-00002.gguf",
    ]
    assert Which.GGUF(quantized_model_id="smollm2-135m-instruct-q4_1").cli_args() == [
        "gguf",
        "-m",
        "smollm2-135m-instruct-q4_1",
    ]
    assert Which.Plain(model_id="dir", arch=Architecture.Llama).cli_args() == ["plain", "-m", "dir", "-a", "llama"]
    assert Which.Plain(model_id="dir").cli_args() == ["plain", "-m", "dir"]
    assert Which.Plain(model_id="org/model").cli_args() == ["plain", "-m", "org/model"]


def test_options_are_mistralrs_flags() -> None:
    options = ServerOptions(
        which=Which.GGUF(quantized_model_id="x.gguf"),
        api_key="k",
        max_seqs=4,
        max_waiting=8,
        prefix_cache_n=0,
        token_source="none",
        chat_template="t.jinja",
        pa_ctxt_len=1024,
        pa_blk_size=16,
        pa_cache_type="q8_0",
        extra_args=("--max-body", "8mb"),
    )
    assert options.cli_args() == [
        "gguf", "-m", "x.gguf",
        "--api-key", "k", "--max-running", "4", "--max-waiting", "8", "--token-source", "none",
        "--chat-template", "t.jinja", "--pa-ctxt-len", "1024", "--pa-blk-size", "16", "--pa-cache-type", "q8_0",
        "--no-prefix-cache", "--max-body", "8mb",
    ]  # fmt: skip
    assert ServerOptions(prefix_cache_n=16).cli_args() == []


def test_speculative_config_is_the_speculative_flags() -> None:
    draft = SpeculativeConfig(kind="draft", draft_model="small.gguf", gamma=3, draft_p_min=0.5)
    assert ServerOptions(speculative=draft).cli_args() == [
        "--speculative", "draft", "--draft-model", "small.gguf", "--gamma", "3", "--draft-p-min", "0.5",
    ]  # fmt: skip
    ngram = SpeculativeConfig(ngram_min=1, ngram_max=3)
    assert ngram.cli_args() == ["--speculative", "ngram", "--ngram-min", "1", "--ngram-max", "3"]
    with pytest.raises(ValueError, match="needs draft_model"):
        SpeculativeConfig(kind="draft")
    with pytest.raises(ValueError, match="kind must be 'ngram' or 'draft'"):
        SpeculativeConfig(kind="eagle")


def test_server_command_explicit_env_and_search(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert find_server_command(["my-server", "--flag"]) == ["my-server", "--flag"]
    assert find_server_command("/opt/bin/mistralrs-server") == ["/opt/bin/mistralrs-server"]
    script = tmp_path / "packages/cli/bin/mistralrs-server.js"
    script.parent.mkdir(parents=True)
    script.write_text("")
    assert find_server_command(str(script))[1:] == [str(script)]
    monkeypatch.setenv("MISTRALRS_SERVER", str(script))
    assert find_server_command()[1:] == [str(script)]
    with pytest.raises(MistralRsError, match="no such file"):
        find_server_command(str(tmp_path / "missing.js"))
    monkeypatch.delenv("MISTRALRS_SERVER")
    # From inside the checkout (this test's own location), the repository's CLI is found.
    found = find_server_command()
    assert found[-1].endswith(os.path.join("packages", "cli", "bin", "mistralrs-server.js"))


def test_server_command_not_found_says_where_it_looked(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import mistralrs.server_command as server_command

    monkeypatch.delenv("MISTRALRS_SERVER", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(server_command, "__file__", str(tmp_path / "site-packages/mistralrs/server_command.py"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(MistralRsError, match="mistralrs-server not found.*MISTRALRS_SERVER"):
        find_server_command()


def test_base_url_and_launch_options_do_not_mix() -> None:
    with pytest.raises(ValueError, match="which, token_source only apply to a server it starts"):
        Runner(Which.GGUF(quantized_model_id="m.gguf"), base_url="http://127.0.0.1:1", token_source="none")
    with pytest.raises(ValueError, match="http:// or https://"):
        Runner(base_url="127.0.0.1:1234")


def test_a_connected_runner_needs_no_server_until_it_sends() -> None:
    runner = Runner(base_url="http://127.0.0.1:9/v1", api_key="k")
    assert runner.base_url == "http://127.0.0.1:9/v1" and runner.server_pid is None
    runner.close()
    with pytest.raises(MistralRsError, match="closed"):
        runner.health()
