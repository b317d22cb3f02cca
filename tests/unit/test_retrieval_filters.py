"""Attribute filters (OpenAI's comparison / compound shape) over a real tenant store, in
every search mode; and the errors that name the offending part."""

import pytest

from ingest.types import DocumentInput
from lorag.app.chat import Citation
from lorag.app.container import Lorag
from lorag.app.responses import FileCitation, file_citations
from lorag.core.errors import InvalidInput
from lorag.core.modes import RetrievalMode
from lorag.testing.settings import fast_settings
from retrieval.filters import parse_filter

ANIMALS = [
    DocumentInput("cat", "Cats purr in the barn.", metadata={"kind": "pet", "legs": 4}),
    DocumentInput("dog", "Dogs bark in the barn.", metadata={"kind": "pet", "legs": 4, "big": True}),
    DocumentInput("hen", "Hens lay eggs in the barn.", metadata={"kind": "farm", "legs": 2}),
    DocumentInput("eel", "Eels swim past the barn.", metadata={"legs": 0}),
]


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    lorag = Lorag(fast_settings(tmp_path_factory.mktemp("filters") / "data"))
    lorag.tenants.create("acme")
    lorag.documents.ingest("acme", ANIMALS)
    yield lorag
    lorag.close()


def eq(key, value, op="eq"):
    return {"type": op, "key": key, "value": value}


CASES = [
    (eq("kind", "pet"), {"cat", "dog"}),
    (eq("kind", "pet", "ne"), {"hen", "eel"}),  # a document without the key is "not equal"
    (eq("legs", 2, "gt"), {"cat", "dog"}),
    (eq("legs", 2, "gte"), {"cat", "dog", "hen"}),
    (eq("legs", 2, "lt"), {"eel"}),
    (eq("legs", 0, "lte"), {"eel"}),
    (eq("big", True), {"dog"}),
    (eq("kind", ["farm", "wild"], "in"), {"hen"}),
    (eq("kind", ["pet"], "nin"), {"hen", "eel"}),
    ({"type": "and", "filters": [eq("kind", "pet"), eq("big", True, "ne")]}, {"cat"}),
    ({"type": "or", "filters": [eq("legs", 2), {"type": "and", "filters": [
        eq("kind", "pet"), eq("big", True)]}]}, {"hen", "dog"}),
]


@pytest.mark.parametrize("mode", [RetrievalMode.DENSE, RetrievalMode.LEXICAL, RetrievalMode.HYBRID])
@pytest.mark.parametrize(("value", "expected"), CASES)
def test_filters_keep_exactly_the_matching_documents(app, mode, value, expected):
    hits = app.retrieval.search("acme", "barn", k=10, mode=mode, filters=parse_filter(value))
    assert {h.document_id for h in hits} == expected


@pytest.mark.parametrize(("value", "param"), [
    ({"type": "xor"}, "filters.type"),
    (eq("kind", "pet") | {"extra": 1}, "filters.extra"),
    (eq("bad key!", 1), "filters.key"),
    (eq("legs", "two", "gt"), "filters.value"),
    (eq("kind", [], "in"), "filters.value"),
    (eq("kind", {"a": 1}), "filters.value"),
    ({"type": "and", "filters": []}, "filters.filters"),
    ({"type": "or", "filters": [eq("a", 1), eq("b", float("nan"))]}, "filters.filters[1].value"),
])
def test_bad_filters_are_refused_naming_the_part(value, param):
    with pytest.raises(InvalidInput) as refused:
        parse_filter(value)
    assert refused.value.param == param


def test_a_filter_tree_is_bounded():
    deep = eq("a", 1)
    for _ in range(70):
        deep = {"type": "and", "filters": [deep]}
    with pytest.raises(InvalidInput):
        parse_filter(deep)


def citation(number, document_id, source):
    return Citation(number, document_id, number, None, source, 0.5)


def test_file_citations_sit_at_markers_else_at_the_end():
    citations = [citation(1, "vector_store/vs_a/file-1", "a.md"),
                 citation(2, "vector_store/vs_a/file-2", "b.txt"),
                 citation(3, "vector_store/vs_a/file-1", "a.md"),
                 citation(4, "plain-document", "c.txt")]  # not a vector store file
    text = "B says so [2], and A too [3]."
    assert file_citations(citations, text) == [FileCitation("file-2", "b.txt", 10),
                                               FileCitation("file-1", "a.md", 25)]
    assert file_citations(citations, "no markers") == [FileCitation("file-1", "a.md", 10),
                                                       FileCitation("file-2", "b.txt", 10)]
