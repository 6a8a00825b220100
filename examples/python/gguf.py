"""A GGUF file: `Which.GGUF` names a folder and the file in it, as in mistral.rs. Here the file
is the default model's, fetched into the cache by `pull_model()` (`mistralrs-server pull`);
any local .gguf works the same way (a `.gguf` path alone also does).

`tok_model_id` is accepted for mistral.rs scripts; our GGUF loader reads the tokenizer and the
chat template from the file, so it is not needed.

    .venv/bin/python examples/python/gguf.py
"""

from mistralrs import ChatCompletionRequest, Runner, Which, pull_model

path = pull_model()  # e.g. ~/.cache/mistralrs/models/SmolLM2-135M-Instruct.Q4_1.gguf
print(f"model file: {path}")

runner = Runner(
    which=Which.GGUF(
        tok_model_id=None,
        quantized_model_id=str(path.parent),
        quantized_filename=path.name,
    )
)

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
