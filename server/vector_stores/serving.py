"""Vector stores, their files and search results as OpenAI shapes them."""

from __future__ import annotations

from lorag.app.vector_stores import SearchResult, StoreFile, StoreView
from lorag.core.errors import InvalidInput
from server.vector_stores import schemas

# How soon the official client's create_and_poll / upload_and_poll asks again.
POLL_HEADERS = {"openai-poll-after-ms": "250"}


def to_store(view: StoreView) -> schemas.VectorStore:
    row = view.row
    return schemas.VectorStore(
        id=row.id, created_at=int(row.created_at), name=row.name, usage_bytes=view.usage_bytes,
        file_counts=schemas.FileCounts(**{str(k): v for k, v in view.file_counts.items()}),
        status=view.status, last_active_at=int(row.last_active_at), metadata=row.metadata)


def store_list(views: list[StoreView], has_more: bool) -> schemas.VectorStoreList:
    return schemas.VectorStoreList(data=[to_store(v) for v in views],
                                   first_id=views[0].row.id if views else None,
                                   last_id=views[-1].row.id if views else None, has_more=has_more)


def to_store_file(view: StoreFile, chunking: schemas.StaticChunking) -> schemas.VectorStoreFile:
    row = view.row
    return schemas.VectorStoreFile(
        id=row.id, created_at=int(row.created_at), vector_store_id=row.vector_store_id,
        status=view.status.value, last_error=view.last_error, usage_bytes=view.bytes,
        attributes=row.attributes, chunking_strategy=schemas.ChunkingStrategy(static=chunking))


def store_file_list(views: list[StoreFile], has_more: bool,
                    chunking: schemas.StaticChunking) -> schemas.VectorStoreFileList:
    return schemas.VectorStoreFileList(data=[to_store_file(v, chunking) for v in views],
                                       first_id=views[0].row.id if views else None,
                                       last_id=views[-1].row.id if views else None,
                                       has_more=has_more)


def search_query(body: schemas.SearchRequest) -> list[str]:
    """The request's queries; ``rewrite_query`` is refused, never ignored."""
    if body.rewrite_query:
        raise InvalidInput("rewrite_query is not supported: lorag searches the query as given",
                           param="rewrite_query")
    queries = [body.query] if isinstance(body.query, str) else list(body.query)
    if not queries or not all(q.strip() for q in queries):
        raise InvalidInput("query must be a non-empty string or list of strings", param="query")
    return queries


def results_page(queries: list[str], results: list[SearchResult]) -> schemas.SearchResultsPage:
    return schemas.SearchResultsPage(search_query=queries, data=[
        schemas.SearchResult(file_id=r.file_id, filename=r.filename, score=r.score,
                             attributes=r.attributes, content=[schemas.TextContent(text=r.text)])
        for r in results])
