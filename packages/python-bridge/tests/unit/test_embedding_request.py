"""Embeddings without a server: `EmbeddingRequest`'s body, `Which.Embedding`'s command line, and
the decoding of the answer's vectors (base64 little-endian float32, or numbers)."""

from __future__ import annotations

import base64
import struct

import pytest

from mistralrs import EmbeddingArchitecture, EmbeddingRequest, MistralRsError, ModelDType, ServerOptions, Which
from mistralrs.responses import embedding_vectors


def test_a_request_asks_for_base64_and_sends_only_what_is_set() -> None:
    assert EmbeddingRequest(input="hello").to_body() == {
        "model": "default",
        "input": "hello",
        "encoding_format": "base64",
    }
    body = EmbeddingRequest(
        input=["a", "b"],
        truncate_sequence=True,
        dimensions=32,
        prompt_name="query",
        model="m",
        extra_body={"user": "u"},
    ).to_body()
    assert body == {
        "model": "m",
        "input": ["a", "b"],
        "encoding_format": "base64",
        "truncate_sequence": True,
        "dimensions": 32,
        "prompt_name": "query",
        "user": "u",
    }
    assert EmbeddingRequest(input="x", prompt="title: none | text: ").to_body()["prompt"] == "title: none | text: "


def test_token_ids_and_lists_of_them_become_json_lists() -> None:
    assert EmbeddingRequest(input=(1, 2, 3)).to_body()["input"] == [1, 2, 3]
    assert EmbeddingRequest(input=[(1, 2), range(3, 5)]).to_body()["input"] == [[1, 2], [3, 4]]
    with pytest.raises(TypeError, match="not bytes"):
        EmbeddingRequest(input=b"hello").to_body()  # type: ignore[arg-type]


def test_which_embedding_is_the_embedding_command() -> None:
    assert Which.Embedding("org/model").cli_args() == ["embedding", "-m", "org/model"]
    full = Which.Embedding(
        model_id="dir",
        arch=EmbeddingArchitecture.EmbeddingGemma,
        tokenizer_json="tok/tokenizer.json",
        dtype=ModelDType.F32,
    )
    assert full.cli_args() == ["embedding", "-m", "dir", "-a", "gemma3", "-t", "tok/tokenizer.json", "--dtype", "f32"]
    options = ServerOptions(which=full, max_seqs=4)
    assert options.cli_args()[:3] == ["embedding", "-m", "dir"] and "--max-running" in options.cli_args()


@pytest.mark.parametrize(
    ("arch", "flag"),
    [
        (EmbeddingArchitecture.EmbeddingGemma, "gemma3"),
        (EmbeddingArchitecture.Qwen3Embedding, "qwen3"),
        ("embeddinggemma", "gemma3"),  # mistral.rs's name as a string
        ("qwen3embedding", "qwen3"),
        ("gemma3_text", "gemma3_text"),  # a model_type goes as it is
    ],
)
def test_embedding_architectures_are_model_types(arch: EmbeddingArchitecture | str, flag: str) -> None:
    assert Which.Embedding("dir", arch=arch).cli_args() == ["embedding", "-m", "dir", "-a", flag]


def test_dtype_auto_is_the_default_and_sends_no_flag() -> None:
    assert Which.Embedding("dir", dtype=ModelDType.Auto).cli_args() == ["embedding", "-m", "dir"]
    assert Which.Embedding("dir", dtype=None).cli_args() == ["embedding", "-m", "dir"]
    assert Which.Embedding("dir", dtype="bf16").cli_args() == ["embedding", "-m", "dir", "--dtype", "bf16"]


@pytest.mark.parametrize(
    "unsupported",
    [{"topology": "t.yml"}, {"from_uqff": ["a.uqff"]}, {"write_uqff": "out.uqff"}, {"hf_cache_path": "/cache"}],
)
def test_mistralrs_options_without_a_server_flag_are_refused_by_name(unsupported: dict[str, object]) -> None:
    (name,) = unsupported
    with pytest.raises(ValueError, match=f"Which.Embedding: {name}: mistral.rs options this server does not"):
        Which.Embedding("dir", **unsupported)  # type: ignore[arg-type]


def test_tokenizer_json_must_name_a_tokenizer_json_file() -> None:
    with pytest.raises(ValueError, match="tokenizer_json must be a file named tokenizer.json"):
        Which.Embedding("dir", tokenizer_json="tok/my-tokenizer.json")
    assert Which.Embedding("dir", tokenizer_json="tokenizer.json").cli_args()[-2:] == ["-t", "tokenizer.json"]


def float32_base64(values: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()


def test_vectors_decode_from_base64_or_numbers_in_index_order() -> None:
    first, second = [0.5, -1.25, 3.0], [0.1, 2.0, -0.3]
    answer = {
        "object": "list",
        "data": [
            {"object": "embedding", "index": 1, "embedding": float32_base64(second)},
            {"object": "embedding", "index": 0, "embedding": float32_base64(first)},
        ],
    }
    # float32 values widened to Python floats: 0.1 becomes float32's nearest.
    expected_second = list(struct.unpack("<3f", struct.pack("<3f", *second)))
    assert embedding_vectors(answer) == [first, expected_second]
    as_numbers = {"data": [{"index": 0, "embedding": first}, {"index": 1, "embedding": expected_second}]}
    assert embedding_vectors(as_numbers) == embedding_vectors(answer)


@pytest.mark.parametrize(
    "answer",
    [
        {"data": [{"index": 0, "embedding": "not base64!"}]},
        {"data": [{"index": 0, "embedding": base64.b64encode(b"12345").decode()}]},  # 5 bytes
        {"data": [{"embedding": [1.0]}]},
        {"object": "list"},
        "text",
    ],
)
def test_an_answer_of_another_shape_is_reported(answer: object) -> None:
    with pytest.raises(MistralRsError, match="unexpected embeddings answer"):
        embedding_vectors(answer)
