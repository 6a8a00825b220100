"""Basic chat: the runner starts mistralrs-server with the default model (SmolLM2-135M-Instruct
Q4_1), sends one chat request and prints the answer and the token counts.

    .venv/bin/python examples/python/chat.py      # after ./scripts/setup.sh
"""

from mistralrs import ChatCompletionRequest, Runner, Which

runner = Runner(which=Which.Default())

res = runner.send_chat_completion_request(
    ChatCompletionRequest(
        model="default",
        messages=[{"role": "user", "content": "Tell me a story about the Rust type system."}],
        max_tokens=64,
        presence_penalty=1.0,
        top_p=0.1,
        temperature=0.1,
    )
)
print(res.choices[0].message.content)
print(res.usage)
# The server stops when the runner is garbage-collected or the script ends; runner.close() or
# `with Runner(...) as runner:` stop it sooner.
