"""The official `openai` Python client against our server: a second client checks the server."""

from __future__ import annotations

import json
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
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                    "additionalProperties": False,
                },
            },
        }
    ]
    messages: list[dict[str, object]] = [{"role": "user", "content": "What is the weather in Paris?"}]
    first = client.chat.completions.create(
        model="default",
        messages=messages,  # type: ignore[arg-type]
        tools=tools,  # type: ignore[arg-type]
        tool_choice="required",
        max_tokens=64,
    )
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.tool_calls
    call = choice.message.tool_calls[0]
    assert call.type == "function" and call.function.name == "get_weather"
    assert set(json.loads(call.function.arguments)) == {"city"}
    assert call.id.startswith("call_")

    # The result goes back as a `tool` message; the model answers from it.
    messages.append(choice.message.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": call.id, "content": json.dumps({"sky": "sunny", "celsius": 18})})
    final = client.chat.completions.create(
        model="default",
        messages=messages,  # type: ignore[arg-type]
        tools=tools,  # type: ignore[arg-type]
        tool_choice="none",
        max_tokens=32,
        temperature=0,
    )
    assert final.choices[0].message.tool_calls is None
    assert final.choices[0].message.content


def test_streamed_tool_call(client: openai.OpenAI) -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_time",
                "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}},
            },
        }
    ]
    stream = client.chat.completions.create(
        model="default",
        messages=[{"role": "user", "content": "What time is it in Tokyo?"}],
        tools=tools,  # type: ignore[arg-type]
        tool_choice={"type": "function", "function": {"name": "get_time"}},
        max_tokens=64,
        stream=True,
    )
    deltas = [d for c in stream if c.choices for d in (c.choices[0].delta.tool_calls or [])]
    assert len(deltas) == 1 and deltas[0].function is not None
    assert deltas[0].function.name == "get_time"
    assert isinstance(json.loads(deltas[0].function.arguments or ""), dict)


def test_json_schema(client: openai.OpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 30}, "population": {"type": "integer", "minimum": 0}},
        "required": ["city", "population"],
        "additionalProperties": False,
    }
    res = client.chat.completions.create(
        model="default",
        messages=[{"role": "user", "content": "Describe a city."}],  # type: ignore[arg-type]
        response_format={"type": "json_schema", "json_schema": {"name": "city", "schema": schema, "strict": True}},
        max_tokens=64,
    )
    value = json.loads(res.choices[0].message.content or "")
    assert set(value) == {"city", "population"} and isinstance(value["population"], int)
