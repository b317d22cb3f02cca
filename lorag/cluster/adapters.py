"""Adapter delivery without a shared filesystem: engine replicas on other nodes get a
version's files from the registry through Ray, check them against the registry's record
and keep a verified copy on their own disk.

The registry side (``AdapterRegistry``, a Ray actor on the data node) reads the files
of a version from the adapter store and answers with the store's record of them: the
weights' sha256 taken at registration (``lineage.weights_sha256``). The replica side (``AdapterCache``) checks every copy it loads (a cached
one as well as a fresh one) against that record; a copy that fails is deleted and fetched
again, and a version whose fresh copy fails too is refused (``AdapterUnverified``), so
no request is ever answered with weights the registry did not register.

A version is named across the cluster by its Serve multiplexed model id,
``<tenant>/<name>/v<version>#<id>``: the id (never reused) keys the caches, the rest
lets the registry find the version and is read in logs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Awaitable, Callable

from adapters.engines.protocol import AdapterRef
from adapters.store import weights_sha256
from lorag.app.container import Lorag
from lorag.app.settings import Settings
from lorag.core.errors import InvalidInput, NotFound, ServerError

log = logging.getLogger(__name__)

CONFIG_FILE = "adapter_config.json"


class AdapterUnverified(ServerError):
    """The files of an adapter version do not match the registry's record of them."""

    code = "adapter_unverified"


def adapter_model_id(ref: AdapterRef) -> str:
    """The Serve multiplexed model id of an adapter version."""
    return f"{ref.tenant_id}/{ref.name}/v{ref.version}#{ref.int_id}"


@dataclass(frozen=True)
class VersionId:
    tenant_id: str
    name: str
    version: int
    int_id: int

    @classmethod
    def parse(cls, model_id: str) -> "VersionId":
        """Raises InvalidInput (param ``model``) for a string that is no version id."""
        try:
            label, int_id = model_id.rsplit("#", 1)
            tenant, name, version = label.split("/")
            if not version.startswith("v"):
                raise ValueError(version)
            return cls(tenant, name, int(version[1:]), int(int_id))
        except ValueError:
            raise InvalidInput(f"not an adapter version id: {model_id!r}", param="model") from None


@dataclass(frozen=True)
class AdapterRecord:
    """What the registry recorded of a version: what a copy must match."""

    weights_sha256: str


@dataclass(frozen=True)
class AdapterFiles:
    """A version's files as the registry read them (relative path -> bytes)."""

    record: AdapterRecord
    files: dict[str, bytes]


class AdapterRegistry:
    """The adapter store, answering engine replicas (run as a Ray actor on the data node).

    Built from the settings tree (a JSON-able dict), it opens the catalog and the adapter
    folders of ``data_dir`` and serves versions by their model id.
    """

    def __init__(self, settings: dict):
        self._lorag = Lorag(Settings.model_validate(settings))

    def record(self, model_id: str) -> AdapterRecord:
        """The registry's record of a version. Raises NotFound (param ``adapter``) when the
        version was deleted, AdapterUnverified when it predates recorded hashes."""
        version = self._version(model_id)
        sha = (version.lineage or {}).get("weights_sha256")
        if not sha:
            raise AdapterUnverified(f"adapter {version.name!r} version {version.version} has "
                                    "no recorded weights hash; register it again",
                                    param="adapter")
        return AdapterRecord(sha)

    def fetch(self, model_id: str) -> AdapterFiles:
        """The version's files with the registry's record. Raises what ``record`` raises."""
        record = self.record(model_id)
        folder = self._version(model_id).path
        files = {str(path.relative_to(folder)): path.read_bytes()
                 for path in sorted(folder.rglob("*")) if path.is_file()}
        if CONFIG_FILE not in files:
            raise NotFound(f"adapter {model_id!r} was deleted", param="adapter",
                           code="adapter_not_found")
        log.info("adapter files sent adapter=%s files=%d bytes=%d", model_id, len(files),
                 sum(len(b) for b in files.values()))
        return AdapterFiles(record, files)

    def _version(self, model_id: str):
        wanted = VersionId.parse(model_id)
        version = self._lorag.adapters.get(wanted.tenant_id, wanted.name, wanted.version)
        if version.id != wanted.int_id:  # the name was deleted and registered anew
            raise NotFound(f"adapter {model_id!r} was deleted", param="adapter",
                           code="adapter_not_found")
        return version

    def close(self) -> None:
        self._lorag.close()


def verify(folder: Path, record: AdapterRecord) -> str | None:
    """Why the copy in ``folder`` does not match ``record`` (None: it matches). The
    registry records the weights' sha256; the config is checked to be a JSON object."""
    try:
        config = json.loads((folder / CONFIG_FILE).read_text())
    except (OSError, ValueError):
        return "adapter_config.json is missing or unreadable"
    if not isinstance(config, dict):
        return "adapter_config.json is not a JSON object"
    if weights_sha256(folder) != record.weights_sha256:
        return "the weights' sha256 differs from the registry's"
    return None


class AdapterCache:
    """Verified copies of adapter versions on this node's disk, fetched through Ray.

    ``record`` and ``fetch`` are the registry's methods (awaitable); ``root`` is a local
    folder, shared by the replicas of a node (writes are temp folder + rename).
    """

    def __init__(self, root: Path, *, record: Callable[[str], Awaitable[AdapterRecord]],
                 fetch: Callable[[str], Awaitable[AdapterFiles]]):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._record, self._fetch = record, fetch
        self.counts = {"cache_hits": 0, "fetches": 0, "refused_copies": 0}

    async def get(self, model_id: str) -> AdapterRef:
        """The version as an engine loads it, from a verified local copy. Raises NotFound
        (deleted), AdapterUnverified (the registry's own files fail its record)."""
        wanted = VersionId.parse(model_id)
        folder = self.root / str(wanted.int_id)
        record = await self._record(model_id)
        if folder.is_dir():
            why = await asyncio.to_thread(verify, folder, record)
            if why is None:
                self.counts["cache_hits"] += 1
                return _ref(wanted, folder)
            self.counts["refused_copies"] += 1
            log.warning("refused cached adapter copy adapter=%s: %s; fetching it again",
                        model_id, why)
            await asyncio.to_thread(shutil.rmtree, folder, True)
        await self._download(model_id, folder)
        return _ref(wanted, folder)

    async def _download(self, model_id: str, folder: Path) -> None:
        delivered = await self._fetch(model_id)
        self.counts["fetches"] += 1
        tmp = self.root / f".{folder.name}.{os.getpid()}.{id(delivered)}.tmp"
        try:
            await asyncio.to_thread(_write, tmp, delivered.files)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        why = await asyncio.to_thread(verify, tmp, delivered.record)
        if why is not None:
            self.counts["refused_copies"] += 1
            await asyncio.to_thread(shutil.rmtree, tmp, True)
            log.error("refused adapter adapter=%s: %s", model_id, why)
            raise AdapterUnverified(f"adapter {model_id}: {why}; it is not served",
                                    param="adapter")
        try:
            os.rename(tmp, folder)
        except OSError:  # another replica of this node renamed its verified copy first
            shutil.rmtree(tmp, ignore_errors=True)
        log.info("adapter fetched and verified adapter=%s", model_id)

    def drop(self, int_id: int) -> None:
        shutil.rmtree(self.root / str(int_id), ignore_errors=True)


def _write(folder: Path, files: dict[str, bytes]) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    for rel, data in files.items():
        path = folder / rel
        if ".." in Path(rel).parts or Path(rel).is_absolute():
            raise AdapterUnverified(f"adapter file name {rel!r} leaves its folder",
                                    param="adapter")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def _ref(wanted: VersionId, folder: Path) -> AdapterRef:
    return AdapterRef(wanted.tenant_id, wanted.name, wanted.version, wanted.int_id, folder)
