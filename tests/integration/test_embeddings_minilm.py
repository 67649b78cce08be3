"""MiniLMEmbeddings: the offline all-MiniLM-L6-v2 LangChain embeddings used by the RAG examples."""

from __future__ import annotations

import math

import pytest

from langchain_slm_router.embeddings import MiniLMEmbeddings, default_embedding_model_dir
from langchain_slm_router.errors import ModelLoadError

pytestmark = pytest.mark.integration

TEXTS = [
    "The Eiffel Tower is in Paris.",
    "Photosynthesis turns light into chemical energy in plants.",
    "A much longer sentence, with commas, numbers like 1889 and 324 metres, and several clauses about towers.",
]


@pytest.fixture(scope="module")
def emb() -> MiniLMEmbeddings:
    return MiniLMEmbeddings(batch_size=2)  # two batches for three texts: padding across batches


@pytest.mark.requires("minilm")
def test_vectors_are_unit_length_384_floats_and_rank_by_meaning(emb: MiniLMEmbeddings) -> None:
    docs = emb.embed_documents(TEXTS)
    assert [len(v) for v in docs] == [384] * 3
    assert all(abs(math.sqrt(sum(x * x for x in v)) - 1.0) < 1e-5 for v in docs)
    query = emb.embed_query("Where is the Eiffel Tower?")
    scores = [sum(a * b for a, b in zip(query, v)) for v in docs]
    assert scores[0] > 0.6 and scores[0] > scores[1] + 0.3
    assert emb.embed_documents([]) == []


@pytest.mark.requires("minilm", "sentence_transformers")
def test_same_vectors_as_sentence_transformers(emb: MiniLMEmbeddings) -> None:
    import sentence_transformers as st

    ref = st.SentenceTransformer(str(default_embedding_model_dir()), device="cpu").encode(
        TEXTS, normalize_embeddings=True)
    ours = emb.embed_documents(TEXTS)
    assert max(abs(a - b) for v, r in zip(ours, ref) for a, b in zip(v, r)) < 1e-4


def test_missing_model_dir_is_a_typed_error(tmp_path) -> None:
    with pytest.raises(ModelLoadError, match="config.json"):
        MiniLMEmbeddings(model_dir=str(tmp_path)).embed_query("hi")
