"""Embeddings: the runner serves an embedding model (a sentence-transformers folder or Hub
repository: EmbeddingGemma, Qwen3-Embedding) and `send_embedding_request` returns one vector per
input. The query and the documents get their prompts from the model's config (`prompt_name`);
the vectors are normalised, so a dot product is the cosine similarity.

Without an argument it runs the tiny random EmbeddingGemma of the repository's test fixtures
(its similarities mean nothing); give an EmbeddingGemma folder or Hub repository to rank for real:

    .venv/bin/python examples/python/embeddings.py [google/embeddinggemma-300m]
"""

import sys
from pathlib import Path

from mistralrs import EmbeddingArchitecture, EmbeddingRequest, Runner, Which

TINY = Path(__file__).resolve().parents[2] / "packages/core/test/fixtures/embeddings/embeddinggemma-tiny"
model_id = sys.argv[1] if len(sys.argv) > 1 else str(TINY)

documents = [
    "Paris is the capital and largest city of France.",
    "The Rust type system prevents data races at compile time.",
    "Photosynthesis turns light into chemical energy in plants.",
]

with Runner(which=Which.Embedding(model_id=model_id, arch=EmbeddingArchitecture.EmbeddingGemma)) as runner:
    (query,) = runner.send_embedding_request(
        EmbeddingRequest(input="What is the capital of France?", prompt_name="query")
    )
    vectors = runner.send_embedding_request(EmbeddingRequest(input=documents, prompt_name="document"))
    print(f"{len(vectors)} documents, {len(query)} dimensions")
    scores = [sum(q * d for q, d in zip(query, vector, strict=True)) for vector in vectors]
    for score, document in sorted(zip(scores, documents, strict=True), reverse=True):
        print(f"{score:+.4f}  {document}")
