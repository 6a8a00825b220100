"""Every script of examples/python runs as written: against the default model, embeddings.py
against the tiny EmbeddingGemma of the test fixtures."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "python"
REPO = EXAMPLES.parents[1]
USAGE = re.compile(r"Usage\(prompt_tokens=\d+, completion_tokens=\d+, total_tokens=\d+\)")


def chat(out: str) -> None:
    assert USAGE.search(out) and len(out.strip().splitlines()) >= 2


def streaming(out: str) -> None:
    assert re.search(r"\[finish_reason: (stop|length)\]", out) and len(out) > 40


def gguf(out: str) -> None:
    path = Path(re.search(r"^model file: (.+)$", out, re.M).group(1))  # type: ignore[union-attr]
    assert path.suffix == ".gguf" and path.is_file()
    assert USAGE.search(out)


def token_source(out: str) -> None:
    assert "--token-source none" in out and USAGE.search(out)


def json_schema(out: str) -> None:
    address = json.loads(out[: out.rindex("}") + 1])
    assert set(address) == {"street", "city", "state", "zip"}
    assert re.fullmatch(r"[A-Z]{2}", address["state"]) and 10000 <= address["zip"] <= 99999


def embeddings(out: str) -> None:
    assert out.startswith("3 documents, 64 dimensions\n")
    assert len(re.findall(r"^[+-]\d\.\d{4}  \S", out, re.M)) == 3


def speculative(out: str) -> None:
    assert USAGE.search(out)
    counts = json.loads(re.search(r"^speculation: (.+)$", out, re.M).group(1))  # type: ignore[union-attr]
    assert counts["proposed_tokens"] > 0 and 0 < counts["accepted_tokens"] <= counts["proposed_tokens"]


CHECKS: dict[str, Callable[[str], None]] = {
    "chat.py": chat,
    "streaming.py": streaming,
    "gguf.py": gguf,
    "token_source.py": token_source,
    "json_schema.py": json_schema,
    "embeddings.py": embeddings,
    "speculative.py": speculative,
}


def test_every_example_has_a_check() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(CHECKS)


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_example_runs(name: str) -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, f"{name} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
    CHECKS[name](done.stdout)
