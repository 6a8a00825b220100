"""The bridge end to end against the real server with the default model (one server per session)."""

from __future__ import annotations

import json
import time
import urllib.request

import pytest

from mistralrs import (
    BadRequestError,
    ChatCompletionChunkResponse,
    ChatCompletionRequest,
    ChatCompletionResponse,
    CompletionRequest,
    CompletionResponse,
    NotFoundError,
    Runner,
    Stream,
)

HI = [{"role": "user", "content": "Hi!"}]


def chat(runner: Runner, **kwargs: object) -> ChatCompletionResponse:
    res = runner.send_chat_completion_request(ChatCompletionRequest(messages=HI, **kwargs))  # type: ignore[arg-type]
    assert isinstance(res, ChatCompletionResponse)
    return res


def test_chat(runner: Runner) -> None:
    res = chat(runner, max_tokens=16)
    assert res.object == "chat.completion" and res.id.startswith("chatcmpl-")
    assert res.model == runner.health()["model"] == "smollm2-135m-instruct-q4_1"
    choice = res.choices[0]
    assert choice.message.role == "assistant" and choice.message.content
    assert choice.finish_reason in ("stop", "length")
    assert res.usage.prompt_tokens > 0 and 0 < res.usage.completion_tokens <= 16
    assert res.usage.total_tokens == res.usage.prompt_tokens + res.usage.completion_tokens


def test_greedy_chat_repeats_and_max_tokens_cuts(runner: Runner) -> None:
    first = chat(runner, max_tokens=5, temperature=0)
    again = chat(runner, max_tokens=5, temperature=0)
    assert first.choices[0].message.content == again.choices[0].message.content
    assert first.choices[0].finish_reason == "length" and first.usage.completion_tokens == 5


def test_n_choices_with_a_seed_and_stop_seqs(runner: Runner) -> None:
    res = chat(runner, max_tokens=12, n_choices=2, temperature=1.0, seed=11)
    assert [c.index for c in res.choices] == [0, 1]
    # Choice i is sampled with seed + i: the second choice of seed 11 is the first of seed 12.
    seed_12 = chat(runner, max_tokens=12, temperature=1.0, seed=12)
    assert res.choices[1].message.content == seed_12.choices[0].message.content
    stopped = chat(runner, max_tokens=16, temperature=0, stop_seqs=["!"])
    assert stopped.choices[0].finish_reason == "stop" and "!" not in (stopped.choices[0].message.content or "")


def test_chat_logprobs(runner: Runner) -> None:
    res = chat(runner, max_tokens=4, temperature=0, logprobs=True, top_logprobs=2)
    logprobs = res.choices[0].logprobs
    assert logprobs is not None and logprobs.content is not None and len(logprobs.content) == 4
    for entry in logprobs.content:
        assert entry.logprob <= 0 and len(entry.top_logprobs) == 2
        # Greedy: the chosen token is the most likely one.
        assert entry.top_logprobs[0].token == entry.token


def test_completion(runner: Runner) -> None:
    res = runner.send_completion_request(
        CompletionRequest(prompt="The capital of France is", max_tokens=6, temperature=0, logprobs=1)
    )
    assert isinstance(res, CompletionResponse)
    assert res.object == "text_completion" and res.id.startswith("cmpl-")
    assert "Paris" in res.choices[0].text
    assert res.usage is not None and res.usage.completion_tokens == 6
    assert res.choices[0].logprobs is not None and len(res.choices[0].logprobs.tokens) == 6


def test_streaming_chat_gives_the_same_text_as_without(runner: Runner) -> None:
    whole = chat(runner, max_tokens=12, temperature=0).choices[0].message.content
    stream = runner.send_chat_completion_request(
        ChatCompletionRequest(messages=HI, max_tokens=12, temperature=0, stream=True, include_usage=True)
    )
    assert isinstance(stream, Stream)
    chunks: list[ChatCompletionChunkResponse] = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes in (["stop"], ["length"])
    assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.completion_tokens <= 12


def test_streaming_completion(runner: Runner) -> None:
    stream = runner.send_completion_request(
        CompletionRequest(prompt="The capital of France is", max_tokens=6, temperature=0, stream=True)
    )
    assert isinstance(stream, Stream)
    text = "".join(c.choices[0].text for c in stream if c.choices)
    assert "Paris" in text


def test_leaving_a_stream_early_cancels_it_on_the_server(runner: Runner) -> None:
    stream = runner.send_chat_completion_request(
        ChatCompletionRequest(
            messages=[{"role": "user", "content": "Count to one thousand."}], max_tokens=2000, stream=True
        )
    )
    assert isinstance(stream, Stream)
    with stream:
        for _ in zip(range(3), stream, strict=False):
            pass
    # The server frees the sequence once it sees the connection gone.
    deadline = time.monotonic() + 10
    while True:
        with urllib.request.urlopen(f"{runner.base_url}/stats") as answer:
            stats = json.load(answer)
        if stats["running"] == 0 and stats["waiting"] == 0:
            break
        assert time.monotonic() < deadline, f"the cancelled stream is still generating: {stats}"
        time.sleep(0.1)


def test_a_bad_field_is_a_bad_request_naming_it(runner: Runner) -> None:
    with pytest.raises(BadRequestError) as caught:
        chat(runner, temperature=5)
    error = caught.value
    assert (error.status, error.type, error.param) == (400, "invalid_request_error", "temperature")
    assert "temperature" in error.message


def test_an_unknown_model_is_not_found(runner: Runner) -> None:
    with pytest.raises(NotFoundError) as caught:
        chat(runner, model="no-such-model")
    assert (caught.value.status, caught.value.code) == (404, "model_not_found")


def test_a_json_schema_is_passed_through(runner: Runner) -> None:
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "integer", "minimum": 0, "maximum": 100}},
        "required": ["answer"],
        "additionalProperties": False,
    }
    response_format = {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}
    res = chat(runner, max_tokens=64, response_format=response_format)
    value = json.loads(res.choices[0].message.content or "")
    assert set(value) == {"answer"} and isinstance(value["answer"], int) and 0 <= value["answer"] <= 100


def test_a_regex_grammar_is_passed_through(runner: Runner) -> None:
    res = chat(runner, max_tokens=16, grammar="(yes|no)!", grammar_type="regex")
    assert res.choices[0].message.content in ("yes!", "no!")


def test_a_malformed_grammar_is_a_bad_request(runner: Runner) -> None:
    with pytest.raises(BadRequestError) as caught:
        chat(runner, max_tokens=16, grammar="(yes|no", grammar_type="regex")
    assert (caught.value.status, caught.value.code, caught.value.param) == (400, "invalid_grammar", "grammar")
    assert "regex" in caught.value.message


def test_tools_are_passed_through(runner: Runner) -> None:
    tool = {
        "type": "function",
        "function": {
            "name": "add",
            "parameters": {
                "type": "object",
                "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                "required": ["a", "b"],
            },
        },
    }
    res = runner.send_chat_completion_request(
        ChatCompletionRequest(
            messages=[{"role": "user", "content": "What is 2 + 3?"}],
            tool_schemas=[json.dumps(tool)],
            tool_choice="required",
            max_tokens=64,
        )
    )
    assert isinstance(res, ChatCompletionResponse)
    choice = res.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.tool_calls
    call = choice.message.tool_calls[0]
    assert call.function is not None and call.function.name == "add"
    args = json.loads(call.function.arguments or "")
    assert isinstance(args["a"], int) and isinstance(args["b"], int)


def test_dry_reaches_the_sampler(runner: Runner) -> None:
    prompt = "one two three one two three one two three one two three one two three one"

    def text(**kwargs: object) -> str:
        res = runner.send_completion_request(CompletionRequest(prompt=prompt, max_tokens=24, temperature=0, **kwargs))  # type: ignore[arg-type]
        assert isinstance(res, CompletionResponse)
        return res.choices[0].text

    plain = text()
    assert text(dry_multiplier=0.8, dry_sequence_breakers=[]) != plain
    assert text(dry_multiplier=0.0, dry_sequence_breakers=[]) == plain


def test_unimplemented_fields_are_refused_naming_them(runner: Runner) -> None:
    for field, value in (("truncate_sequence", True), ("web_search_options", {})):
        with pytest.raises(BadRequestError) as caught:
            chat(runner, max_tokens=1, **{field: value})
        assert (caught.value.status, caught.value.code, caught.value.param) == (400, "unsupported_parameter", field)
    # SmolLM2's template has no thinking switch: asking for thinking cannot be honoured.
    with pytest.raises(BadRequestError) as caught:
        chat(runner, max_tokens=1, enable_thinking=True)
    assert (caught.value.code, caught.value.param) == ("unsupported_parameter", "enable_thinking")
    assert chat(runner, max_tokens=1, enable_thinking=False).choices
