"""Speculative decoding: the server proposes tokens by prompt lookup (`kind="ngram"`) and the
model verifies them in one pass. The answer is the model's own, token for token; only faster
where it repeats its input, as when asked to copy text back. `/v1/stats` counts the proposals.

    .venv/bin/python examples/python/speculative.py
"""

import json
import urllib.request

from mistralrs import ChatCompletionRequest, Runner, SpeculativeConfig, Which

runner = Runner(which=Which.Default(), speculative=SpeculativeConfig(kind="ngram", gamma=4))

text = "The quick brown fox jumps over the lazy dog. Pack my box with five dozen liquor jugs."
res = runner.send_chat_completion_request(
    ChatCompletionRequest(
        model="default",
        messages=[{"role": "user", "content": f"Repeat this text exactly: {text}"}],
        max_tokens=48,
        temperature=0.0,
    )
)
print(res.choices[0].message.content)
print(res.usage)

with urllib.request.urlopen(f"{runner.base_url}/stats") as answer:
    print("speculation:", json.dumps(json.load(answer)["speculation"]))
runner.close()
