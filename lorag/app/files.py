"""A tenant's uploaded files: the store of ``lorag/core/files.py``, and deletion that
first takes the file out of every vector store (its documents out of the index)."""

from __future__ import annotations

from typing import BinaryIO

from lorag.app.vector_stores import VectorStoreService
from lorag.core.files import FileStore, StoredFile
from lorag.core.pages import PageRequest


class FileService:
    def __init__(self, store: FileStore, vector_stores: VectorStoreService):
        self.store = store
        self.vector_stores = vector_stores

    def create(self, tenant: str, filename: str | None, purpose: str,
               content: BinaryIO) -> StoredFile:
        """Raises InvalidInput (``purpose``, ``file``), PayloadTooLarge (``file``)."""
        return self.store.create(tenant, filename, purpose, content)

    def get(self, tenant: str, file_id: str) -> StoredFile:
        """Raises NotFound (``file_id``), also for another tenant's file."""
        return self.store.get(tenant, file_id)

    def list(self, tenant: str, request: PageRequest,
             purpose: str | None = None) -> tuple[list[StoredFile], bool]:
        return self.store.list(tenant, request, purpose)

    def delete(self, tenant: str, file_id: str) -> None:
        """Delete the file, after removing it from every vector store that holds it."""
        self.store.get(tenant, file_id)
        self.vector_stores.detach_everywhere(tenant, file_id)
        self.store.delete(tenant, file_id)
