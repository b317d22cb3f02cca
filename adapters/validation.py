"""Checks an adapter must pass before any engine sees it, and safe archive unpacking.

Everything here reads files only: no torch, no model load. The served base model is
described by ``BaseModelSpec`` (its ``config.json`` and the tensor names and shapes in
its safetensors headers), so compatibility is decided on shapes, not on a name string.
Each refusal is an ``InvalidAdapter`` naming the part that is wrong in ``param``:
``adapter.config``, ``adapter.peft_type``, ``adapter.rank``, ``adapter.base_model``,
``adapter.target_modules``, ``adapter.weights``, ``adapter.files``; archives raise
``UnsafeArchive`` / ``PayloadTooLarge`` with ``param="archive"``.
"""

from __future__ import annotations

import json
import logging
import math
import re
import shutil
import stat
import struct
import tarfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Sequence

from lorag.core.errors import InvalidInput, PayloadTooLarge, ServerError

log = logging.getLogger(__name__)

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
PEFT_PREFIX = "base_model.model."
# Modules no engine applies a LoRA to here (vLLM serves linear layers of the blocks only).
UNSUPPORTED_TARGETS = {"embed_tokens", "lm_head", "wte", "wpe", "embed_in", "embed_out"}
# vLLM's packed linear layers and the model's modules they stand for.
PACKED = {"qkv_proj": ("q_proj", "k_proj", "v_proj"), "gate_up_proj": ("gate_proj", "up_proj")}
# Fields that must agree between two configs for them to describe the same architecture.
ARCHITECTURE_FIELDS = ("model_type", "hidden_size", "num_hidden_layers", "num_attention_heads",
                       "num_key_value_heads", "intermediate_size", "vocab_size", "head_dim")
_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2,
                "I8": 1, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}
_MAX_HEADER = 100 * 2**20


class InvalidAdapter(InvalidInput):
    """The adapter cannot be served on this base model; ``param`` names what is wrong."""

    code = "invalid_adapter"


class UnsafeArchive(InvalidInput):
    """An archive entry would escape the target folder, or is a link or special file."""

    code = "unsafe_archive"


@dataclass(frozen=True)
class AdapterInfo:
    """What validation learned about an adapter (stored in the catalog)."""

    rank: int
    alpha: float
    targets: tuple[str, ...]
    base_model: str
    modules: int  # base modules the adapter changes


# -- the served base model ------------------------------------------------------------


@dataclass(frozen=True)
class BaseModelSpec:
    """The served base model as validation needs it: config and linear-layer shapes."""

    folder: Path
    config: dict
    linear: dict[str, tuple[int, int]]  # module path -> (out_features, in_features)
    names: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def from_folder(cls, folder: Path | str) -> "BaseModelSpec":
        """Read ``config.json`` and the safetensors headers; raises ServerError."""
        folder = _local_model_folder(folder)
        try:
            config = json.loads((folder / "config.json").read_text())
        except (OSError, ValueError) as exc:
            raise ServerError(f"cannot read the base model config in {folder}: {exc}") from exc
        linear: dict[str, tuple[int, int]] = {}
        for path in _weight_files(folder):
            for name, (_, shape) in read_safetensors_header(path, param="base_model").items():
                if name.endswith(".weight") and len(shape) == 2:
                    linear[name[: -len(".weight")]] = (shape[0], shape[1])
        names = {folder.name, str(config.get("_name_or_path") or "")}
        return cls(folder, config, linear, frozenset(_norm(n) for n in names if n))

    def architecture(self) -> dict:
        return {key: self.config.get(key) for key in ARCHITECTURE_FIELDS}


def _local_model_folder(model: Path | str) -> Path:
    folder = Path(model)
    if folder.is_dir():
        return folder
    try:  # a hub id already in the local cache (GPU hosts)
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(str(model), local_files_only=True))
    except Exception as exc:  # noqa: BLE001 - any failure means "not available locally"
        raise ServerError(f"base model {model!r} is not a local folder: {exc}") from exc


def _weight_files(folder: Path) -> list[Path]:
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return [folder / shard for shard in shards]
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise ServerError(f"no safetensors weights in base model folder {folder}")
    return files


def _norm(name: str) -> str:
    """``HuggingFaceTB/SmolLM2-135M-Instruct`` -> ``smollm2-135m-instruct``."""
    return PurePosixPath(str(name).rstrip("/")).name.lower().replace("_", "-")


# -- safetensors ----------------------------------------------------------------------


def read_safetensors_header(path: Path, *, param: str = "adapter.weights") -> dict[str, tuple[str, tuple[int, ...]]]:
    """``{tensor name: (dtype, shape)}`` from a safetensors file, with every tensor's
    byte range checked against the file size (a truncated file is refused).

    Raises InvalidAdapter(param) for an unreadable, malformed or truncated file.
    """
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                raise ValueError("file is shorter than its header")
            (length,) = struct.unpack("<Q", head)
            if length > min(size - 8, _MAX_HEADER):
                raise ValueError("header length is larger than the file")
            header = json.loads(fh.read(length))
    except (OSError, ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise InvalidAdapter(f"{path.name} is not a readable safetensors file: {exc}",
                             param=param) from None
    return _check_tensors(header, size - 8 - length, path.name, param)


def _check_tensors(header: object, data_size: int, filename: str,
                   param: str) -> dict[str, tuple[str, tuple[int, ...]]]:
    if not isinstance(header, dict):
        raise InvalidAdapter(f"{filename}: header is not a JSON object", param=param)
    tensors: dict[str, tuple[str, tuple[int, ...]]] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (start, end) = info["dtype"], tuple(info["shape"]), info["data_offsets"]
            expected = math.prod(shape) * _DTYPE_BYTES[dtype]
            inside = 0 <= start <= end <= data_size and end - start == expected
        except (KeyError, TypeError, ValueError):
            raise InvalidAdapter(f"{filename}: tensor {name!r} has a malformed header entry",
                                 param=param) from None
        if not inside:
            raise InvalidAdapter(f"{filename}: tensor {name!r} lies outside the file "
                                 "(truncated or corrupt)", param=param)
        tensors[name] = (dtype, tuple(int(d) for d in shape))
    return tensors


# -- the adapter ----------------------------------------------------------------------


def validate_adapter(folder: Path, base: BaseModelSpec, *, max_rank: int,
                     check_base_name: bool = True,
                     served_modules: Sequence[str] | None = None) -> AdapterInfo:
    """Check a PEFT LoRA folder against the served base model and, when the engine wraps
    only ``served_modules`` with LoRA, against those; raises InvalidAdapter."""
    config = read_adapter_config(folder)
    rank, alpha, rank_pattern = _check_rank(config, max_rank)
    base_model = _check_base_model(config, base, check_base_name)
    targets, modules = _check_targets(config, base)
    if served_modules is not None:
        _check_served(modules, served_modules)
    _check_weights(folder, base, modules, rank, rank_pattern)
    return AdapterInfo(rank, alpha, targets, base_model, len(modules))


def read_adapter_config(folder: Path) -> dict:
    """The parsed ``adapter_config.json`` of a LoRA adapter; raises InvalidAdapter."""
    path = Path(folder) / CONFIG_FILE
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError:
        raise InvalidAdapter(f"{CONFIG_FILE} is missing", param="adapter.config") from None
    except (OSError, ValueError, RecursionError) as exc:  # RecursionError: nested too deep
        raise InvalidAdapter(f"{CONFIG_FILE} is not readable JSON: {exc}",
                             param="adapter.config") from None
    if not isinstance(config, dict):
        raise InvalidAdapter(f"{CONFIG_FILE} is not a JSON object", param="adapter.config")
    if config.get("peft_type") != "LORA":
        raise InvalidAdapter(f"only LoRA adapters are served; peft_type is "
                             f"{config.get('peft_type')!r}", param="adapter.peft_type")
    for flag in ("use_dora", "use_qalora", "use_bdlora"):
        if config.get(flag):
            raise InvalidAdapter(f"{flag} adapters are not supported", param="adapter.peft_type")
    if config.get("modules_to_save"):
        raise InvalidAdapter("modules_to_save (fully trained layers) is not supported",
                             param="adapter.modules_to_save")
    return config


def _check_rank(config: dict, max_rank: int) -> tuple[int, float, dict[str, int]]:
    rank, pattern = config.get("r"), config.get("rank_pattern") or {}
    ranks = [rank, *pattern.values()] if isinstance(pattern, dict) else [None]
    if not all(isinstance(r, int) and not isinstance(r, bool) and r >= 1 for r in ranks):
        raise InvalidAdapter(f"rank r must be a positive integer; got {rank!r}", param="adapter.rank")
    if max(ranks) > max_rank:
        raise InvalidAdapter(f"rank {max(ranks)} is above the engine's max_lora_rank {max_rank}",
                             param="adapter.rank")
    alpha = config.get("lora_alpha", rank)
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool):
        raise InvalidAdapter(f"lora_alpha must be a number; got {alpha!r}", param="adapter.config")
    return rank, float(alpha), pattern


def _check_base_model(config: dict, base: BaseModelSpec, check_name: bool) -> str:
    """The adapter's base model must be the served one: same architecture when its
    folder is readable here, else the same name (unless ``check_name`` is off)."""
    name = str(config.get("base_model_name_or_path") or "")
    if not name:
        return ""
    local = Path(name) / "config.json"
    if local.is_file():
        try:
            theirs = json.loads(local.read_text())
        except (OSError, ValueError):
            theirs = None
        if isinstance(theirs, dict):
            diff = [f"{k} {theirs.get(k)!r} != {v!r}" for k, v in base.architecture().items()
                    if theirs.get(k) != v]
            if diff:
                raise InvalidAdapter(f"adapter was made for another base model ({name}): "
                                     + ", ".join(diff), param="adapter.base_model")
            return name
    if _norm(name) not in base.names:
        if check_name:
            raise InvalidAdapter(
                f"adapter was made for base model {name!r}, the engine serves "
                f"{base.folder.name!r}", param="adapter.base_model")
        log.warning("adapter base model %r differs from served %s; shapes decide", name,
                    base.folder.name)
    return name


def _check_targets(config: dict, base: BaseModelSpec) -> tuple[tuple[str, ...], set[str]]:
    """The target names and the base modules they select (PEFT's matching rules)."""
    targets = config.get("target_modules")
    if isinstance(targets, str):
        modules = {m for m in base.linear if re.fullmatch(targets, m)}
        names: tuple[str, ...] = (targets,)
        missing = [] if modules else [targets]
    elif isinstance(targets, list) and targets and all(isinstance(t, str) for t in targets):
        names = tuple(sorted(set(targets)))
        matched = {t: {m for m in base.linear if m == t or m.endswith("." + t)} for t in names}
        modules = set().union(*matched.values())
        missing = [t for t, found in matched.items() if not found]
    else:
        raise InvalidAdapter(f"target_modules must be a list of names or a regex; got {targets!r}",
                             param="adapter.target_modules")
    if missing:
        raise InvalidAdapter(f"target modules not in the base model: {', '.join(missing)}",
                             param="adapter.target_modules")
    unsupported = sorted({m.rsplit(".", 1)[-1] for m in modules} & UNSUPPORTED_TARGETS)
    if unsupported:
        raise InvalidAdapter(f"LoRA on {', '.join(unsupported)} is not supported by the engines",
                             param="adapter.target_modules")
    return names, modules


def check_served_names(served: Sequence[str], base: BaseModelSpec) -> None:
    """``engine.lora_target_modules`` must name modules of the served model (vLLM starts
    with any list and silently wraps nothing for a name it does not know); raises
    InvalidInput(engine.lora_target_modules)."""
    known = {m.rsplit(".", 1)[-1] for m in base.linear} - UNSUPPORTED_TARGETS | set(PACKED)
    unknown = sorted(set(served) - known)
    if unknown:
        raise InvalidInput(f"{', '.join(unknown)}: not a module of {base.folder.name} "
                           f"(its linear modules: {', '.join(sorted(known - set(PACKED)))})",
                           param="engine.lora_target_modules")


def check_still_served(folder: Path, base: BaseModelSpec, served: Sequence[str]) -> None:
    """A registered adapter (its stored folder) against the modules the engine wraps now;
    raises InvalidAdapter when the engine would silently leave some of its weights out."""
    _, modules = _check_targets(read_adapter_config(folder), base)
    _check_served(modules, served)


def _check_served(modules: set[str], served: Sequence[str]) -> None:
    """Every module the adapter changes must be one the engine wraps (a packed name such
    as vLLM's ``qkv_proj`` stands for its parts)."""
    wrapped = set(served).union(*(PACKED.get(name, ()) for name in served))
    outside = sorted({m.rsplit(".", 1)[-1] for m in modules} - wrapped)
    if outside:
        raise InvalidAdapter(
            f"adapter targets {', '.join(outside)}; the engine applies LoRA to "
            f"{', '.join(sorted(served))} only (engine.lora_target_modules)",
            param="adapter.target_modules")


def _check_weights(folder: Path, base: BaseModelSpec, modules: set[str], rank: int,
                   rank_pattern: dict[str, int]) -> None:
    path = Path(folder) / WEIGHTS_FILE
    if not path.is_file():
        other = "adapter_model.bin is not accepted (pickle); " if (Path(folder) / "adapter_model.bin").exists() else ""
        raise InvalidAdapter(f"{other}{WEIGHTS_FILE} is missing", param="adapter.weights")
    tensors = read_safetensors_header(path)
    if not tensors:
        raise InvalidAdapter(f"{WEIGHTS_FILE} holds no tensors", param="adapter.weights")
    pairs: dict[str, dict[str, tuple[int, ...]]] = {}
    for name, (_, shape) in tensors.items():
        module, kind = _split_tensor_name(name)
        if module not in base.linear:
            raise InvalidAdapter(f"tensor {name!r} maps to no linear module of the base model",
                                 param="adapter.weights")
        if module not in modules:
            raise InvalidAdapter(f"tensor {name!r} is for a module outside target_modules",
                                 param="adapter.weights")
        pairs.setdefault(module, {})[kind] = shape
    for module, shapes in sorted(pairs.items()):
        _check_pair(module, shapes, base.linear[module], _module_rank(module, rank, rank_pattern))


def _split_tensor_name(name: str) -> tuple[str, str]:
    match = re.fullmatch(r"(?:base_model\.model\.)?(.+)\.(lora_A|lora_B)(?:\.[^.]+)?\.weight", name)
    if match is None:
        raise InvalidAdapter(f"unexpected tensor {name!r} (only lora_A / lora_B weights are served)",
                             param="adapter.weights")
    return match.group(1), match.group(2)


def _module_rank(module: str, rank: int, pattern: dict[str, int]) -> int:
    for key, value in pattern.items():
        if module == key or module.endswith("." + key) or re.fullmatch(key, module):
            return value
    return rank


def _check_pair(module: str, shapes: dict[str, tuple[int, ...]], base_shape: tuple[int, int],
                rank: int) -> None:
    out_features, in_features = base_shape
    expected = {"lora_A": (rank, in_features), "lora_B": (out_features, rank)}
    for kind, want in expected.items():
        got = shapes.get(kind)
        if got is None:
            raise InvalidAdapter(f"{module}: {kind} is missing", param="adapter.weights")
        if tuple(got) != want:
            raise InvalidAdapter(f"{module}.{kind} has shape {list(got)}, the base model needs "
                                 f"{list(want)} (rank {rank})", param="adapter.weights")


# -- files and archives ---------------------------------------------------------------


def copy_adapter_files(source: Path, dest: Path, *, max_bytes: int, max_files: int) -> None:
    """Copy regular files of ``source`` into ``dest`` (created); refuses links, special
    files and trees over the limits (InvalidAdapter / PayloadTooLarge, param adapter.files)."""
    total, count = 0, 0
    dest.mkdir(parents=True, exist_ok=True)
    # Walked lazily (parents before children) and every entry counted, so a huge tree
    # (say "/") is refused at the limit instead of being listed whole first.
    for path in Path(source).rglob("*"):
        mode = path.lstat().st_mode
        rel = path.relative_to(source)
        if stat.S_ISLNK(mode) or not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            raise InvalidAdapter(f"{rel} is a link or special file; adapters are plain files",
                                 param="adapter.files")
        count += 1
        if stat.S_ISDIR(mode):
            _check_limits(total, count, max_bytes, max_files, "adapter.files")
            (dest / rel).mkdir(parents=True, exist_ok=True)
            continue
        total += path.lstat().st_size
        _check_limits(total, count, max_bytes, max_files, "adapter.files")
        shutil.copyfile(path, dest / rel, follow_symlinks=False)


def is_archive(path: Path) -> bool:
    name = path.name.lower()
    return path.is_file() and name.endswith((".zip", ".tar", ".tar.gz", ".tgz"))


def unpack_archive(archive: Path, dest: Path, *, max_bytes: int, max_files: int) -> Path:
    """Unpack a .zip / .tar / .tar.gz adapter archive into ``dest``; returns the folder
    holding ``adapter_config.json`` (the root or its single top-level folder).

    Refuses (UnsafeArchive, param ``archive``) absolute names, ``..``, links and special
    files; PayloadTooLarge when the unpacked files exceed ``max_bytes`` or ``max_files``,
    counted on the bytes actually written, not on the sizes the archive declares.
    """
    dest.mkdir(parents=True, exist_ok=True)
    name = archive.name.lower()
    try:
        if name.endswith(".zip"):
            _unpack_zip(archive, dest, max_bytes, max_files)
        else:
            _unpack_tar(archive, dest, max_bytes, max_files)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as exc:
        raise InvalidAdapter(f"{archive.name} is not a readable archive: {exc}",
                             param="archive") from None
    return _adapter_root(dest)


def _safe_member(name: str) -> PurePosixPath:
    path = PurePosixPath(name.replace("\\", "/"))
    if not name or path.is_absolute() or ".." in path.parts or re.match(r"^[A-Za-z]:", name):
        raise UnsafeArchive(f"archive entry {name!r} would be written outside the adapter folder",
                            param="archive")
    return path


def _check_limits(total: int, count: int, max_bytes: int, max_files: int, param: str) -> None:
    if count > max_files:
        raise PayloadTooLarge(f"more than {max_files} files", param=param)
    if total > max_bytes:
        raise PayloadTooLarge(f"more than {max_bytes} bytes once unpacked", param=param)


def _unpack_zip(archive: Path, dest: Path, max_bytes: int, max_files: int) -> None:
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        _check_limits(0, len(infos), max_bytes, max_files, "archive")
        written = 0
        for info in infos:
            rel = _safe_member(info.filename)
            kind = stat.S_IFMT(info.external_attr >> 16)
            if kind and kind not in (stat.S_IFREG, stat.S_IFDIR):
                raise UnsafeArchive(f"archive entry {info.filename!r} is a link or special file",
                                    param="archive")
            if info.is_dir():
                (dest / rel).mkdir(parents=True, exist_ok=True)
                continue
            with zf.open(info) as src:
                written = _copy_capped(src, dest / rel, written, max_bytes)


def _unpack_tar(archive: Path, dest: Path, max_bytes: int, max_files: int) -> None:
    with tarfile.open(archive, "r:*") as tf:
        written, count = 0, 0
        for member in tf:
            count += 1
            _check_limits(0, count, max_bytes, max_files, "archive")
            rel = _safe_member(member.name)
            if member.isdir():
                (dest / rel).mkdir(parents=True, exist_ok=True)
                continue
            if not member.isfile():
                raise UnsafeArchive(f"archive entry {member.name!r} is a link or special file",
                                    param="archive")
            src = tf.extractfile(member)
            written = _copy_capped(src, dest / rel, written, max_bytes)


def _copy_capped(src, target: Path, written: int, max_bytes: int) -> int:
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("wb") as out:
        while chunk := src.read(1 << 20):
            written += len(chunk)
            if written > max_bytes:
                raise PayloadTooLarge(f"archive unpacks to more than {max_bytes} bytes",
                                      param="archive")
            out.write(chunk)
    return written


def _adapter_root(dest: Path) -> Path:
    if (dest / CONFIG_FILE).is_file():
        return dest
    children = [p for p in dest.iterdir() if not p.name.startswith(("__MACOSX", "."))]
    if len(children) == 1 and (children[0] / CONFIG_FILE).is_file():
        return children[0]
    raise InvalidAdapter(f"the archive holds no {CONFIG_FILE} at its root", param="adapter.config")
