"""The official `openai` Python client against our server: a second client checks the server."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from mistralrs import ChatCompletionRequest, ChatCompletionResponse, Runner

HI = [{"role": "user", "content": "Hi!"}]


@pytest.fixture(scope="module")
def client(runner: Runner) -> Iterator[openai.OpenAI]:
    # No retries: a 429 or 5xx must fail the test, not be hidden by the client.
    with openai.OpenAI(base_url=runner.base_url, api_key="unused", max_retries=0, timeout=120) as c:
        yield c


def test_models(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list()] == ["smollm2-135m-instruct-q4_1"]


def test_chat(client: openai.OpenAI, runner: Runner) -> None:
    res = client.chat.completions.create(model="default", messages=HI, max_tokens=12, temperature=0)  # type: ignore[arg-type]
    assert res.object == "chat.completion" and res.choices[0].message.role == "assistant"
    assert res.usage is not None and 0 < res.usage.completion_tokens <= 12
    # The same answer as the bridge's (greedy).
    ours = runner.send_chat_completion_request(ChatCompletionRequest(messages=HI, max_tokens=12, temperature=0))
    assert isinstance(ours, ChatCompletionResponse)
    assert res.choices[0].message.content == ours.choices[0].message.content


def test_streaming(client: openai.OpenAI) -> None:
    whole = client.chat.completions.create(model="default", messages=HI, max_tokens=12, temperature=0)  # type: ignore[arg-type]
    stream = client.chat.completions.create(
        model="default",
        messages=HI,
        max_tokens=12,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},  # type: ignore[arg-type]
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == whole.usage.completion_tokens  # type: ignore[union-attr]


def test_completions(client: openai.OpenAI) -> None:
    res = client.completions.create(model="default", prompt="The capital of France is", max_tokens=6, temperature=0)
    assert "Paris" in res.choices[0].text


def test_a_bad_field_is_a_bad_request(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="default", messages=HI, temperature=5)  # type: ignore[arg-type]
    assert caught.value.status_code == 400 and caught.value.param == "temperature"


def test_tools(client: openai.OpenAI) -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "The weather in a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
            },
        }
    ]
    # The server refuses tools with a 400 until tool calling lands (issue 8: constrained decoding
    # and tool calling); then this becomes a round trip: a tool call, its result, the answer.
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="default",
            messages=[{"role": "user", "content": "What is the weather in Paris?"}],
            tools=tools,  # type: ignore[arg-type]
            max_tokens=32,
        )
    assert caught.value.status_code == 400
    assert (caught.value.code, caught.value.param) == ("unsupported_parameter", "tools")
