"""Streaming: the answer arrives token by token as server-sent events; each chunk is printed as
it comes. Leaving the loop early (or `stream.close()`) cancels the generation on the server.

    .venv/bin/python examples/python/streaming.py
"""

from mistralrs import ChatCompletionRequest, Runner, Which

with Runner(which=Which.Default()) as runner:
    stream = runner.send_chat_completion_request(
        ChatCompletionRequest(
            model="default",
            messages=[{"role": "user", "content": "Tell me a story about the Rust type system."}],
            max_tokens=64,
            presence_penalty=1.0,
            top_p=0.1,
            temperature=0.1,
            stream=True,
        )
    )
    for chunk in stream:
        for choice in chunk.choices:
            print(choice.delta.content or "", end="", flush=True)
            if choice.finish_reason is not None:
                print(f"\n[finish_reason: {choice.finish_reason}]")
