"""JSON schema: ask for output that follows a schema, with OpenAI's `response_format`.

STATUS: the server does not constrain output yet (constrained decoding is issue 8). Until then
it refuses `response_format` of type json_schema with a 400 `unsupported_parameter` rather than
answer with unconstrained text, and this script prints that error and says so. Once the
grammar work lands, the same script prints the JSON object and checks it against the schema.

    .venv/bin/python examples/python/json_schema.py
"""

import json
import sys

from mistralrs import BadRequestError, ChatCompletionRequest, Runner, Which

schema = {
    "type": "object",
    "properties": {
        "street": {"type": "string"},
        "city": {"type": "string"},
        "state": {"type": "string", "pattern": "^[A-Z]{2}$"},
        "zip": {"type": "integer", "minimum": 10000, "maximum": 99999},
    },
    "required": ["street", "city", "state", "zip"],
    "additionalProperties": False,
}

with Runner(which=Which.Default()) as runner:
    try:
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
    except BadRequestError as error:
        if error.code != "unsupported_parameter":
            raise
        print(f"the server refused the schema: {error.status} {error.code} (param {error.param}): {error.message}")
        print("structured output is not implemented in this server yet; no output was generated.")
        sys.exit(0)

content = res.choices[0].message.content or ""
address = json.loads(content)
missing = [key for key in schema["required"] if key not in address]
if missing:
    sys.exit(f"the answer lacks {missing}: {content}")
print(json.dumps(address, indent=2))
print(res.usage)
