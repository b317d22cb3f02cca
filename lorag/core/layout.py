"""Where each piece of state lives under the data directory.

    <data_dir>/lorag.db                           tenants, keys, brands, adapters, jobs
    <data_dir>/tenants/<tenant>/store.db          the tenant's documents, chunks, FTS5
    <data_dir>/tenants/<tenant>/index.faiss       rebuildable cache of the chunk vectors
    <data_dir>/tenants/<tenant>/web_pages.db      validators (ETag...) of fetched web pages
    <data_dir>/tenants/<tenant>/files/<file id>/  uploaded files (/v1/files), under their name
    <data_dir>/adapters/<tenant>/<name>/<version>/  peft adapter folders
    <data_dir>/models/                            prepared base models
    <data_dir>/import/adapters/                   folders and archives the admin API may register
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from lorag.core.errors import InvalidInput

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


def write_atomically(path: Path, *parts: bytes) -> None:
    """Write ``parts`` to ``path`` atomically: a temp file ``<name>.<random>.tmp`` in the
    same folder, fsync, os.replace, fsync the folder. A reader sees the old file or the new
    one; a killed writer leaves at most a temp file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                out.write(part)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def check_name(value: str, param: str) -> str:
    """Validate an id used in paths (tenant, brand, adapter): lowercase, digits, '-', '_'."""
    if not isinstance(value, str) or not _NAME.match(value):
        raise InvalidInput(
            f"{param} must be 1-63 characters of a-z, 0-9, '-' or '_', starting with a letter "
            f"or digit; got {value!r}", param=param)
    return value


@dataclass(frozen=True)
class Layout:
    data_dir: Path

    @property
    def catalog_db(self) -> Path:
        return self.data_dir / "lorag.db"

    def tenant_dir(self, tenant: str) -> Path:
        return self.data_dir / "tenants" / check_name(tenant, "tenant")

    def tenant_store(self, tenant: str) -> Path:
        return self.tenant_dir(tenant) / "store.db"

    def tenant_index(self, tenant: str) -> Path:
        return self.tenant_dir(tenant) / "index.faiss"

    def tenant_web_pages(self, tenant: str) -> Path:
        return self.tenant_dir(tenant) / "web_pages.db"

    def tenant_files(self, tenant: str) -> Path:
        return self.tenant_dir(tenant) / "files"

    @property
    def adapters_dir(self) -> Path:
        return self.data_dir / "adapters"

    def adapter_dir(self, tenant: str, name: str, version: int) -> Path:
        return (self.adapters_dir / check_name(tenant, "tenant") / check_name(name, "adapter")
                / str(int(version)))

    @property
    def adapter_imports_dir(self) -> Path:
        """Where an operator puts adapters for ``POST .../adapters/register`` (the default
        of ``adapters.import_roots``)."""
        return self.data_dir / "import" / "adapters"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def uploads_dir(self) -> Path:
        return self.data_dir / "uploads"
