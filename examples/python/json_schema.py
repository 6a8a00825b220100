"""JSON schema: ask for output that follows a schema, with OpenAI's `response_format`.

The server compiles the schema into a grammar (llguidance) and masks every step's logits to
it, so the answer always parses and matches: here, the state is two capital letters and the
zip a five-digit number, even from a 135M model.

    .venv/bin/python examples/python/json_schema.py
"""

import json
import sys

from mistralrs import ChatCompletionRequest, ChatCompletionResponse, Runner, Which

schema = {
    "type": "object",
    "properties": {
        "street": {"type": "string", "maxLength": 40},
        "city": {"type": "string", "maxLength": 30},
        "state": {"type": "string", "pattern": "^[A-Z]{2}$"},
        "zip": {"type": "integer", "minimum": 10000, "maximum": 99999},
    },
    "required": ["street", "city", "state", "zip"],
    "additionalProperties": False,
}

with Runner(which=Which.Default()) as runner:
    res = runner.send_chat_completion_request(
        ChatCompletionRequest(
            model="default",
            messages=[{"role": "user", "content": "Give me a sample address."}],
            max_tokens=256,
            temperature=0.1,
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "address", "schema": schema, "strict": True},
            },
        )
    )

assert isinstance(res, ChatCompletionResponse)
content = res.choices[0].message.content or ""
address = json.loads(content)
missing = [key for key in schema["required"] if key not in address]
if missing:
    sys.exit(f"the answer lacks {missing}: {content}")
print(json.dumps(address, indent=2))
print(res.usage)
