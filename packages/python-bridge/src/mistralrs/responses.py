"""OpenAI-shaped response objects with attribute access (`res.choices[0].message.content`).

Each class reads the server's JSON with `from_json`; fields the server adds later are ignored
until a class names them. `dataclasses.asdict(res)` gives plain dicts back.
"""

from __future__ import annotations

import base64
import binascii
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from .errors import MistralRsError

Json = Mapping[str, Any]
T = TypeVar("T")


def parse_response(cls: type[T], data: Any) -> T:
    """`cls.from_json(data)`, with a shape the bridge does not expect reported as such."""
    try:
        return cls.from_json(data)  # type: ignore[attr-defined, no-any-return]
    except (KeyError, TypeError, AttributeError, ValueError) as error:
        raise MistralRsError(
            f"unexpected {cls.__name__} from the server ({type(error).__name__}: {error}): {data!r:.500}"
        ) from error


def embedding_vectors(data: Any) -> list[list[float]]:
    """The vectors of a `/v1/embeddings` answer, in the order of the inputs (by `index`).

    Each `embedding` is a list of numbers, or with `encoding_format: base64` the little-endian
    float32 bytes in base64; both give the same Python floats (float32 values, widened).
    """
    try:
        items = sorted(data["data"], key=lambda item: int(item["index"]))
        return [_embedding(item["embedding"]) for item in items]
    except (KeyError, TypeError, AttributeError, ValueError, struct.error) as error:
        raise MistralRsError(
            f"unexpected embeddings answer from the server ({type(error).__name__}: {error}): {data!r:.500}"
        ) from error


def _embedding(value: Any) -> list[float]:
    if not isinstance(value, str):
        return [float(x) for x in value]
    try:
        raw = base64.b64decode(value, validate=True)
    except binascii.Error as error:
        raise ValueError(f"embedding is not base64: {error}") from error
    if len(raw) % 4:
        raise ValueError(f"base64 embedding of {len(raw)} bytes, not a whole number of float32")
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


def _list(data: Any, read: Callable[[Any], T]) -> list[T]:
    return [read(item) for item in data]


def _optional(data: Any, read: Callable[[Any], T]) -> T | None:
    return None if data is None else read(data)


@dataclass
class Usage:
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int

    @classmethod
    def from_json(cls, d: Json) -> Usage:
        return cls(int(d["prompt_tokens"]), int(d["completion_tokens"]), int(d["total_tokens"]))


@dataclass
class TopLogprob:
    token: str
    logprob: float
    bytes: list[int] | None

    @classmethod
    def from_json(cls, d: Json) -> TopLogprob:
        return cls(d["token"], float(d["logprob"]), d.get("bytes"))


@dataclass
class ResponseLogprob:
    token: str
    logprob: float
    bytes: list[int] | None
    top_logprobs: list[TopLogprob]

    @classmethod
    def from_json(cls, d: Json) -> ResponseLogprob:
        return cls(
            d["token"], float(d["logprob"]), d.get("bytes"), _list(d.get("top_logprobs") or [], TopLogprob.from_json)
        )


@dataclass
class Logprobs:
    content: list[ResponseLogprob] | None

    @classmethod
    def from_json(cls, d: Json) -> Logprobs:
        return cls(_optional(d.get("content"), lambda c: _list(c, ResponseLogprob.from_json)))


@dataclass
class FunctionCall:
    name: str | None
    arguments: str | None

    @classmethod
    def from_json(cls, d: Json) -> FunctionCall:
        return cls(d.get("name"), d.get("arguments"))


@dataclass
class ToolCall:
    """A tool call of a message, or a piece of one in a stream's delta (then `index` says which)."""

    id: str | None
    type: str | None
    function: FunctionCall | None
    index: int | None = None

    @classmethod
    def from_json(cls, d: Json) -> ToolCall:
        return cls(d.get("id"), d.get("type"), _optional(d.get("function"), FunctionCall.from_json), d.get("index"))


@dataclass
class ResponseMessage:
    role: str
    content: str | None
    tool_calls: list[ToolCall] | None = None

    @classmethod
    def from_json(cls, d: Json) -> ResponseMessage:
        return cls(d["role"], d.get("content"), _optional(d.get("tool_calls"), lambda c: _list(c, ToolCall.from_json)))


@dataclass
class Choice:
    index: int
    message: ResponseMessage
    finish_reason: str | None
    logprobs: Logprobs | None

    @classmethod
    def from_json(cls, d: Json) -> Choice:
        return cls(
            int(d["index"]),
            ResponseMessage.from_json(d["message"]),
            d.get("finish_reason"),
            _optional(d.get("logprobs"), Logprobs.from_json),
        )


@dataclass
class ChatCompletionResponse:
    id: str
    object: str
    created: int
    model: str
    choices: list[Choice]
    usage: Usage
    system_fingerprint: str | None = None

    @classmethod
    def from_json(cls, d: Json) -> ChatCompletionResponse:
        return cls(
            d["id"],
            d["object"],
            int(d["created"]),
            d["model"],
            _list(d["choices"], Choice.from_json),
            Usage.from_json(d["usage"]),
            d.get("system_fingerprint"),
        )


@dataclass
class Delta:
    role: str | None
    content: str | None
    tool_calls: list[ToolCall] | None = None

    @classmethod
    def from_json(cls, d: Json) -> Delta:
        return cls(
            d.get("role"), d.get("content"), _optional(d.get("tool_calls"), lambda c: _list(c, ToolCall.from_json))
        )


@dataclass
class ChunkChoice:
    index: int
    delta: Delta
    finish_reason: str | None
    logprobs: Logprobs | None

    @classmethod
    def from_json(cls, d: Json) -> ChunkChoice:
        return cls(
            int(d["index"]),
            Delta.from_json(d["delta"]),
            d.get("finish_reason"),
            _optional(d.get("logprobs"), Logprobs.from_json),
        )


@dataclass
class ChatCompletionChunkResponse:
    """One event of a chat stream. With `include_usage` the last one has no choices and a `usage`."""

    id: str
    object: str
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None
    system_fingerprint: str | None = None

    @classmethod
    def from_json(cls, d: Json) -> ChatCompletionChunkResponse:
        return cls(
            d["id"],
            d["object"],
            int(d["created"]),
            d["model"],
            _list(d["choices"], ChunkChoice.from_json),
            _optional(d.get("usage"), Usage.from_json),
            d.get("system_fingerprint"),
        )


@dataclass
class CompletionLogprobs:
    """OpenAI's completions logprobs: one entry per generated token."""

    tokens: list[str]
    token_logprobs: list[float]
    top_logprobs: list[dict[str, float]] | None
    text_offset: list[int]

    @classmethod
    def from_json(cls, d: Json) -> CompletionLogprobs:
        return cls(
            list(d["tokens"]), [float(x) for x in d["token_logprobs"]], d.get("top_logprobs"), list(d["text_offset"])
        )


@dataclass
class CompletionChoice:
    index: int
    text: str
    finish_reason: str | None
    logprobs: CompletionLogprobs | None

    @classmethod
    def from_json(cls, d: Json) -> CompletionChoice:
        return cls(
            int(d["index"]),
            d["text"],
            d.get("finish_reason"),
            _optional(d.get("logprobs"), CompletionLogprobs.from_json),
        )


@dataclass
class CompletionResponse:
    """A text completion, or one event of a completion stream (then `usage` is None but in the last
    event with `include_usage`)."""

    id: str
    object: str
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None
    system_fingerprint: str | None = None

    @classmethod
    def from_json(cls, d: Json) -> CompletionResponse:
        return cls(
            d["id"],
            d["object"],
            int(d["created"]),
            d["model"],
            _list(d["choices"], CompletionChoice.from_json),
            _optional(d.get("usage"), Usage.from_json),
            d.get("system_fingerprint"),
        )
