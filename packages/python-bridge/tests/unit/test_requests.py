"""mistral.rs's request fields become the OpenAI body the server reads."""

from __future__ import annotations

import json

import pytest

from mistralrs import ChatCompletionRequest, CompletionRequest

HI = [{"role": "user", "content": "Hi!"}]


def test_chat_body_maps_mistralrs_names_to_openai_names() -> None:
    body = ChatCompletionRequest(
        messages=HI,
        max_tokens=8,
        n_choices=2,
        stop_seqs=["\n"],
        temperature=0.5,
        top_p=0.9,
        top_k=40,
        min_p=0.05,
        presence_penalty=0.1,
        frequency_penalty=0.2,
        logit_bias={17: -100},
        logprobs=True,
        top_logprobs=3,
        seed=7,
        stream=True,
        include_usage=True,
    ).to_body()
    assert body == {
        "model": "default",
        "messages": HI,
        "max_tokens": 8,
        "n": 2,
        "stop": ["\n"],
        "temperature": 0.5,
        "top_p": 0.9,
        "top_k": 40,
        "min_p": 0.05,
        "presence_penalty": 0.1,
        "frequency_penalty": 0.2,
        "logit_bias": {"17": -100},
        "logprobs": True,
        "top_logprobs": 3,
        "seed": 7,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def test_chat_body_leaves_out_unset_fields() -> None:
    assert ChatCompletionRequest(messages=HI).to_body() == {"model": "default", "messages": HI}


def test_tool_schemas_as_json_strings_or_tools_as_dicts_are_the_same_field() -> None:
    tool = {"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}
    from_strings = ChatCompletionRequest(messages=HI, tool_schemas=[json.dumps(tool)], tool_choice="auto").to_body()
    from_dicts = ChatCompletionRequest(messages=HI, tools=[tool], tool_choice="auto").to_body()
    assert from_strings == from_dicts
    assert from_dicts["tools"] == [tool] and from_dicts["tool_choice"] == "auto"
    with pytest.raises(ValueError, match="not both"):
        ChatCompletionRequest(messages=HI, tools=[tool], tool_schemas=[tool]).to_body()


def test_grammar_is_the_seeds_extension_field() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    body = ChatCompletionRequest(messages=HI, grammar=json.dumps(schema), grammar_type="json_schema").to_body()
    assert body["grammar"] == {"type": "json_schema", "value": schema}
    regex = CompletionRequest(prompt="x", grammar=r"\d+", grammar_type="regex").to_body()
    assert regex["grammar"] == {"type": "regex", "value": r"\d+"}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"grammar": "x"}, "grammar_type must be one of"),
        ({"grammar": "x", "grammar_type": "ebnf"}, "grammar_type must be one of"),
        ({"grammar_type": "regex"}, "grammar is not"),
        ({"grammar": "{oops", "grammar_type": "json_schema"}, "not valid JSON"),
        ({"include_usage": True}, "needs stream=True"),
    ],
)
def test_requests_that_cannot_be_sent_are_refused_before_sending(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ChatCompletionRequest(messages=HI, **kwargs).to_body()


def test_wrong_container_types_are_refused() -> None:
    with pytest.raises(TypeError, match="messages"):
        ChatCompletionRequest(messages="Hi!").to_body()  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="stop_seqs"):
        ChatCompletionRequest(messages=HI, stop_seqs="\n").to_body()  # type: ignore[arg-type]


def test_completion_body() -> None:
    body = CompletionRequest(
        prompt=[1, 2, 3], max_tokens=4, echo_prompt=True, suffix="!", best_of=1, logprobs=2, extra_body={"user": "u"}
    ).to_body()
    assert body == {
        "model": "default",
        "prompt": [1, 2, 3],
        "max_tokens": 4,
        "echo": True,
        "suffix": "!",
        "best_of": 1,
        "logprobs": 2,
        "user": "u",
    }


def test_dry_and_template_fields_use_mistralrs_names() -> None:
    dry = {"dry_multiplier": 0.8, "dry_base": 1.75, "dry_allowed_length": 2, "dry_sequence_breakers": ["\n", ":"]}
    body = ChatCompletionRequest(
        messages=HI, enable_thinking=False, reasoning_effort="low", dry_penalty_last_n=64, ignore_eos=True, **dry
    ).to_body()
    assert body == {
        "model": "default",
        "messages": HI,
        **dry,
        "dry_penalty_last_n": 64,
        "ignore_eos": True,
        "enable_thinking": False,
        "reasoning_effort": "low",
    }
    kwargs = ChatCompletionRequest(messages=HI, chat_template_kwargs={"enable_thinking": True}).to_body()
    assert kwargs["chat_template_kwargs"] == {"enable_thinking": True}
    completion = CompletionRequest(prompt="x", **dry).to_body()  # type: ignore[arg-type]
    assert {k: completion[k] for k in dry} == dry
    with pytest.raises(TypeError, match="dry_sequence_breakers"):
        CompletionRequest(prompt="x", dry_sequence_breakers="\n").to_body()  # type: ignore[arg-type]


def test_unimplemented_mistralrs_fields_are_sent_for_the_server_to_refuse() -> None:
    # Sent only when they ask for something; the server answers 400 unsupported_parameter.
    assert "truncate_sequence" not in ChatCompletionRequest(messages=HI).to_body()
    body = ChatCompletionRequest(messages=HI, truncate_sequence=True, web_search_options={}).to_body()
    assert body["truncate_sequence"] is True and body["web_search_options"] == {}
