"""Requests in the shape of mistral.rs's `ChatCompletionRequest`, `CompletionRequest` and
`EmbeddingRequest`.

Field names are mistral.rs's where it has one (`n_choices`, `stop_seqs`, `tool_schemas`,
`grammar`/`grammar_type`, `echo_prompt`, the `dry_*` fields, `enable_thinking`,
`reasoning_effort`); `to_body()` turns them into the OpenAI request the server reads (`n`,
`stop`, `tools`, ...). Values are checked by the server, which names the field of a bad one in
its 400 answer; here only what cannot be sent at all is refused. mistral.rs fields this server
does not implement for chat and completions (`web_search_options`, `truncate_sequence`) are sent
when set, and the server answers 400 `unsupported_parameter` rather than ignore them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

JsonObject = dict[str, Any]
Message = Mapping[str, Any]
GRAMMAR_TYPES = ("regex", "json_schema", "lark", "llguidance")


@dataclass
class ChatCompletionRequest:
    """A chat turn: `messages` as OpenAI's (`{"role": "user", "content": "Hi!"}`).

    `tool_schemas` (mistral.rs: a list of JSON strings) and `tools` (OpenAI: a list of dicts)
    are two spellings of the same field; give at most one. `grammar` with `grammar_type`
    (`regex`, `json_schema`, `lark`, `llguidance`) is sent as the seed's `grammar` extension.
    `extra_body` adds fields as they are.
    """

    messages: Sequence[Message]
    model: str = "default"
    logit_bias: Mapping[int, float] | None = None
    logprobs: bool = False
    top_logprobs: int | None = None
    max_tokens: int | None = None
    n_choices: int = 1
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    stop_seqs: Sequence[str] | None = None
    temperature: float | None = None
    top_p: float | None = None
    stream: bool = False
    top_k: int | None = None
    grammar: str | JsonObject | None = None
    grammar_type: str | None = None
    min_p: float | None = None
    tool_schemas: Sequence[str | JsonObject] | None = None
    tool_choice: str | JsonObject | None = None
    response_format: JsonObject | None = None
    repetition_penalty: float | None = None
    dry_multiplier: float | None = None
    dry_base: float | None = None
    dry_allowed_length: int | None = None
    dry_sequence_breakers: Sequence[str] | None = None
    # Template variables: both reach the chat template (if it reads them).
    enable_thinking: bool | None = None
    reasoning_effort: str | None = None
    web_search_options: JsonObject | None = None
    truncate_sequence: bool = False
    # Not in mistral.rs's Python class; fields of the server all the same.
    seed: int | None = None
    dry_penalty_last_n: int | None = None
    ignore_eos: bool = False
    chat_template_kwargs: Mapping[str, Any] | None = None
    tools: Sequence[JsonObject] | None = None
    include_usage: bool = False
    extra_body: JsonObject | None = None

    def to_body(self) -> JsonObject:
        if isinstance(self.messages, (str, bytes)):
            raise TypeError("messages must be a list of {'role', 'content'} dicts, not a string")
        if self.tools is not None and self.tool_schemas is not None:
            raise ValueError("give tools or tool_schemas, not both")
        body: JsonObject = {"model": self.model, "messages": [dict(m) for m in self.messages]}
        _sampling_fields(body, self)
        if self.logprobs:
            body["logprobs"] = True
        _put(body, "top_logprobs", self.top_logprobs)
        tools = self.tools if self.tools is not None else self.tool_schemas
        if tools is not None:
            body["tools"] = [_json_value(t, "tool_schemas") for t in tools]
        _put(body, "tool_choice", self.tool_choice)
        _put(body, "response_format", self.response_format)
        _put(body, "enable_thinking", self.enable_thinking)
        _put(body, "reasoning_effort", self.reasoning_effort)
        if self.chat_template_kwargs is not None:
            body["chat_template_kwargs"] = dict(self.chat_template_kwargs)
        _put(body, "web_search_options", self.web_search_options)
        _stream_fields(body, self.stream, self.include_usage)
        _grammar_field(body, self.grammar, self.grammar_type)
        body.update(self.extra_body or {})
        return body


@dataclass
class CompletionRequest:
    """A text completion of `prompt` (no chat template): a string, token ids, or a list of either.

    `logprobs` is the number of alternatives per token (0 … 20), as in OpenAI's completions.
    """

    prompt: str | Sequence[str] | Sequence[int] | Sequence[Sequence[int]]
    model: str = "default"
    echo_prompt: bool = False
    logit_bias: Mapping[int, float] | None = None
    max_tokens: int | None = None
    n_choices: int = 1
    best_of: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    stop_seqs: Sequence[str] | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    suffix: str | None = None
    grammar: str | JsonObject | None = None
    grammar_type: str | None = None
    min_p: float | None = None
    logprobs: int | None = None
    stream: bool = False
    repetition_penalty: float | None = None
    dry_multiplier: float | None = None
    dry_base: float | None = None
    dry_allowed_length: int | None = None
    dry_sequence_breakers: Sequence[str] | None = None
    truncate_sequence: bool = False
    ignore_eos: bool = False
    # Not in mistral.rs's Python class; fields of the server all the same.
    seed: int | None = None
    dry_penalty_last_n: int | None = None
    include_usage: bool = False
    extra_body: JsonObject | None = None

    def to_body(self) -> JsonObject:
        prompt: Any = self.prompt if isinstance(self.prompt, str) else list(self.prompt)
        body: JsonObject = {"model": self.model, "prompt": prompt}
        _sampling_fields(body, self)
        if self.echo_prompt:
            body["echo"] = True
        _put(body, "best_of", self.best_of)
        _put(body, "suffix", self.suffix)
        _put(body, "logprobs", self.logprobs)
        _stream_fields(body, self.stream, self.include_usage)
        _grammar_field(body, self.grammar, self.grammar_type)
        body.update(self.extra_body or {})
        return body


@dataclass
class EmbeddingRequest:
    """Embeddings of `input`: a string, a list of strings, token ids, or a list of token id lists.

    `truncate_sequence` cuts an input longer than the model's context (keeping its special
    tokens) instead of the server's 400. Beyond mistral.rs's class, the server's fields:
    `dimensions` (the first values, renormalised: Matryoshka), `prompt_name` (a prompt of the
    model's sentence-transformers config, e.g. `"query"`) or `prompt` (a text put before each
    text input). The vectors travel as base64 little-endian float32 (`encoding_format`), which
    the runner decodes.
    """

    input: str | Sequence[str] | Sequence[int] | Sequence[Sequence[int]]
    truncate_sequence: bool = False
    # Not in mistral.rs's Python class; fields of the server all the same.
    dimensions: int | None = None
    prompt_name: str | None = None
    prompt: str | None = None
    model: str = "default"
    extra_body: JsonObject | None = None

    def to_body(self) -> JsonObject:
        if isinstance(self.input, bytes):
            raise TypeError("input must be a string, a list of strings or token ids, not bytes")
        body: JsonObject = {"model": self.model, "input": _embedding_input(self.input), "encoding_format": "base64"}
        if self.truncate_sequence:
            body["truncate_sequence"] = True
        _put(body, "dimensions", self.dimensions)
        _put(body, "prompt_name", self.prompt_name)
        _put(body, "prompt", self.prompt)
        body.update(self.extra_body or {})
        return body


def _embedding_input(value: str | Sequence[str] | Sequence[int] | Sequence[Sequence[int]]) -> Any:
    """JSON-ready `input`: a string as it is; sequences (tuples, ranges) as lists, nested ones too."""
    if isinstance(value, str):
        return value
    return [item if isinstance(item, (str, int)) else list(item) for item in value]


def _sampling_fields(body: JsonObject, r: ChatCompletionRequest | CompletionRequest) -> None:
    """The fields chat and completions share, under their OpenAI names."""
    _put(body, "max_tokens", r.max_tokens)
    if r.n_choices != 1:
        body["n"] = r.n_choices
    _put(body, "temperature", r.temperature)
    _put(body, "top_p", r.top_p)
    _put(body, "top_k", r.top_k)
    _put(body, "min_p", r.min_p)
    _put(body, "presence_penalty", r.presence_penalty)
    _put(body, "frequency_penalty", r.frequency_penalty)
    _put(body, "repetition_penalty", r.repetition_penalty)
    _put(body, "seed", r.seed)
    _put(body, "dry_multiplier", r.dry_multiplier)
    _put(body, "dry_base", r.dry_base)
    _put(body, "dry_allowed_length", r.dry_allowed_length)
    _put(body, "dry_penalty_last_n", r.dry_penalty_last_n)
    if r.dry_sequence_breakers is not None:
        if isinstance(r.dry_sequence_breakers, str):
            raise TypeError("dry_sequence_breakers must be a list of strings")
        body["dry_sequence_breakers"] = list(r.dry_sequence_breakers)
    if r.ignore_eos:
        body["ignore_eos"] = True
    if r.truncate_sequence:
        body["truncate_sequence"] = True
    if r.stop_seqs is not None:
        if isinstance(r.stop_seqs, str):
            raise TypeError("stop_seqs must be a list of strings")
        body["stop"] = list(r.stop_seqs)
    if r.logit_bias is not None:
        # JSON object keys are strings: OpenAI's logit_bias maps "token id" → bias.
        body["logit_bias"] = {str(token): bias for token, bias in r.logit_bias.items()}


def _stream_fields(body: JsonObject, stream: bool, include_usage: bool) -> None:
    if stream:
        body["stream"] = True
        if include_usage:
            body["stream_options"] = {"include_usage": True}
    elif include_usage:
        raise ValueError("include_usage needs stream=True (a response without streaming always has usage)")


def _grammar_field(body: JsonObject, grammar: str | JsonObject | None, grammar_type: str | None) -> None:
    """The seed's extension: `"grammar": {"type": …, "value": …}`; JSON grammars as objects."""
    if grammar is None:
        if grammar_type is not None:
            raise ValueError("grammar_type is set but grammar is not")
        return
    if grammar_type not in GRAMMAR_TYPES:
        raise ValueError(f"grammar_type must be one of {', '.join(GRAMMAR_TYPES)}; got {grammar_type!r}")
    value: Any = grammar
    if grammar_type in ("json_schema", "llguidance"):
        value = _json_value(grammar, "grammar")
    body["grammar"] = {"type": grammar_type, "value": value}


def _json_value(value: str | JsonObject, name: str) -> Any:
    """A dict as it is, or a JSON string (mistral.rs's way of passing schemas) decoded."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError as error:
        raise ValueError(f"{name}: not valid JSON ({error})") from error


def _put(body: JsonObject, key: str, value: Any) -> None:
    if value is not None:
        body[key] = value


__all__: list[str] = ["ChatCompletionRequest", "CompletionRequest", "EmbeddingRequest", "GRAMMAR_TYPES"]
