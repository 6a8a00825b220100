"""`Which.Embedding` and `send_embedding_request` against a real server on the tiny embedding
models of @mistralrs/core's fixtures (checked against sentence-transformers there): the bridge's
vectors (base64, decoded) must be the `openai` client's (floats) from the same server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from mistralrs import (
    BadRequestError,
    ChatCompletionRequest,
    EmbeddingArchitecture,
    EmbeddingRequest,
    ModelDType,
    NotFoundError,
    Runner,
    ServerStartError,
    Which,
)
from processes import living_group_members, process_gone

FIXTURES = Path(__file__).resolve().parents[3] / "packages" / "core" / "test" / "fixtures" / "embeddings"
GEMMA = FIXTURES / "embeddinggemma-tiny"
QWEN3 = FIXTURES / "qwen3-embedding-tiny"
TEXTS = ["Paris", "What is the capital of France?", "café — naïve 🙂"]


@pytest.fixture(scope="module")
def runner() -> Iterator[Runner]:
    with Runner(which=Which.Embedding(str(GEMMA), arch=EmbeddingArchitecture.EmbeddingGemma)) as started:
        assert started.server_pid is not None
        yield started
    assert process_gone(started.server_pid), f"left behind: {living_group_members(started.server_pid)}"


@pytest.fixture(scope="module")
def client(runner: Runner) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=runner.base_url, api_key="unused", max_retries=0, timeout=120) as c:
        yield c


def command_line(runner: Runner) -> list[str]:
    """The started server's arguments from its subcommand on."""
    argv = runner.server_argv or []
    return argv[argv.index("embedding") :]


def openai_vectors(client: openai.OpenAI, **kwargs: object) -> list[list[float]]:
    answer = client.embeddings.create(model="default", encoding_format="float", **kwargs)  # type: ignore[arg-type]
    return [item.embedding for item in sorted(answer.data, key=lambda item: item.index)]


def test_the_server_runs_the_embedding_command(runner: Runner) -> None:
    assert command_line(runner)[:5] == ["embedding", "-m", str(GEMMA), "-a", "gemma3"]
    assert runner.list_models() == ["embeddinggemma-tiny"]


def test_one_vector_per_input_as_the_openai_client_gets_them(runner: Runner, client: openai.OpenAI) -> None:
    vectors = runner.send_embedding_request(EmbeddingRequest(input=TEXTS))
    assert len(vectors) == 3 and all(len(v) == 64 and all(isinstance(x, float) for x in v) for v in vectors)
    assert vectors == openai_vectors(client, input=TEXTS)
    single = runner.send_embedding_request(EmbeddingRequest(input="Paris"))
    assert single == openai_vectors(client, input="Paris") == vectors[:1]


def test_token_ids_dimensions_and_prompts(runner: Runner, client: openai.OpenAI) -> None:
    ids = [2, 10, 20, 30, 1]
    assert runner.send_embedding_request(EmbeddingRequest(input=ids)) == openai_vectors(client, input=ids)
    lists = [ids, [5, 6, 7]]
    assert runner.send_embedding_request(EmbeddingRequest(input=lists)) == openai_vectors(client, input=lists)
    short = runner.send_embedding_request(EmbeddingRequest(input="Paris", dimensions=16))
    assert len(short[0]) == 16 and short == openai_vectors(client, input="Paris", dimensions=16)
    query = runner.send_embedding_request(EmbeddingRequest(input="Paris", prompt_name="query"))
    assert query == openai_vectors(client, input="Paris", extra_body={"prompt_name": "query"})
    assert query != runner.send_embedding_request(EmbeddingRequest(input="Paris"))
    # A prompt given as text is the same as the config's prompt of that name.
    prefix = "task: search result | query: "
    assert runner.send_embedding_request(EmbeddingRequest(input="Paris", prompt=prefix)) == query


def test_model_id_overrides_the_requests_model(runner: Runner) -> None:
    request = EmbeddingRequest(input="Paris", model="no-such-model")
    with pytest.raises(NotFoundError):
        runner.send_embedding_request(request)
    by_id = runner.send_embedding_request(request, model_id="embeddinggemma-tiny")
    assert by_id == runner.send_embedding_request(EmbeddingRequest(input="Paris"))


def test_truncate_sequence_cuts_a_long_input_instead_of_a_400(runner: Runner) -> None:
    long_text = "the quick brown fox jumps over the lazy dog " * 200  # well past the 512 positions
    with pytest.raises(BadRequestError) as caught:
        runner.send_embedding_request(EmbeddingRequest(input=long_text))
    assert caught.value.status == 400 and "512" in caught.value.message
    (vector,) = runner.send_embedding_request(EmbeddingRequest(input=long_text, truncate_sequence=True))
    assert len(vector) == 64


def test_bad_fields_are_bad_requests_naming_the_field(runner: Runner) -> None:
    with pytest.raises(BadRequestError) as caught:
        runner.send_embedding_request(EmbeddingRequest(input="Paris", dimensions=65))
    assert caught.value.param == "dimensions"
    with pytest.raises(BadRequestError) as caught:
        runner.send_embedding_request(EmbeddingRequest(input=[]))
    assert caught.value.param == "input"


def test_a_chat_request_to_an_embedding_model_is_refused(runner: Runner) -> None:
    with pytest.raises(BadRequestError) as caught:
        runner.send_chat_completion_request(ChatCompletionRequest(messages=[{"role": "user", "content": "Hi!"}]))
    assert caught.value.code == "model_not_supported" and caught.value.param == "model"


def test_qwen3_embedding_with_a_tokenizer_file_and_a_dtype() -> None:
    which = Which.Embedding(
        str(QWEN3),
        arch=EmbeddingArchitecture.Qwen3Embedding,
        tokenizer_json=str(QWEN3 / "tokenizer.json"),
        dtype=ModelDType.F32,
    )
    with Runner(which=which) as runner:
        tokenizer = str(QWEN3 / "tokenizer.json")
        assert command_line(runner)[3:9] == ["-a", "qwen3", "-t", tokenizer, "--dtype", "f32"]
        with openai.OpenAI(base_url=runner.base_url, api_key="unused", max_retries=0) as client:
            request = EmbeddingRequest(input=TEXTS, prompt_name="query")
            expected = openai_vectors(client, input=TEXTS, extra_body={"prompt_name": "query"})
            assert runner.send_embedding_request(request) == expected


def test_an_architecture_that_is_not_the_models_stops_the_start() -> None:
    with pytest.raises(ServerStartError, match="model_type `qwen3`"):
        Runner(which=Which.Embedding(str(QWEN3), arch=EmbeddingArchitecture.EmbeddingGemma))
