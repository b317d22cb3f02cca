"""A table of adapters lorag must refuse, each with the error type and ``param`` expected.

Used by the unit tests of validation (store only) and by the engine integration tests
(refused while the engine keeps serving). Each case builds its bad source from a valid
adapter in a fresh folder.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from adapters.validation import InvalidAdapter, UnsafeArchive
from lorag.core.errors import PayloadTooLarge


@dataclass
class Kit:
    good: Path  # a valid adapter on the served tiny model
    work: Path  # an empty folder for this case
    make_lora: Callable[..., Path]  # tiny_lora_factory
    other_base_lora: Path  # a valid adapter on another (hidden 96) tiny model


def _copy(kit: Kit) -> Path:
    return shutil.copytree(kit.good, kit.work / "lora")


def _edit_config(kit: Kit, **changes) -> Path:
    folder = _copy(kit)
    config = json.loads((folder / "adapter_config.json").read_text())
    config.update(changes)
    (folder / "adapter_config.json").write_text(json.dumps(config))
    return folder


def no_config(kit):
    folder = _copy(kit)
    (folder / "adapter_config.json").unlink()
    return folder


def bad_json(kit):
    folder = _copy(kit)
    (folder / "adapter_config.json").write_text("{not json")
    return folder


def not_lora(kit):
    return _edit_config(kit, peft_type="PREFIX_TUNING")


def rank_too_big(kit):
    return shutil.copytree(kit.make_lora(seed=3, rank=32), kit.work / "lora")


def other_base(kit):
    return shutil.copytree(kit.other_base_lora, kit.work / "lora")


def other_base_name(kit):
    return _edit_config(kit, base_model_name_or_path="meta-llama/Llama-2-7b-hf")


def unknown_target(kit):
    return _edit_config(kit, target_modules=["q_proj", "v_proj", "qkv_fused"])


def lm_head_target(kit):
    return _edit_config(kit, target_modules=["q_proj", "v_proj", "lm_head"])


def truncated_weights(kit):
    folder = _copy(kit)
    path = folder / "adapter_model.safetensors"
    path.write_bytes(path.read_bytes()[:-100])
    return folder


def garbage_weights(kit):
    folder = _copy(kit)
    (folder / "adapter_model.safetensors").write_bytes(os.urandom(2000))
    return folder


def no_weights(kit):
    folder = _copy(kit)
    (folder / "adapter_model.safetensors").unlink()
    return folder


def rank_mismatch(kit):
    return _edit_config(kit, r=4)  # the weights are rank 8


def weights_outside_targets(kit):
    return _edit_config(kit, target_modules=["q_proj"])  # weights also hold v_proj


def symlink_inside(kit):
    folder = _copy(kit)
    os.symlink("/etc/hostname", folder / "notes.txt")
    return folder


def _tar(kit: Kit, add: Callable[[tarfile.TarFile], None]) -> Path:
    path = kit.work / "adapter.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        for file in sorted(kit.good.iterdir()):
            tf.add(file, arcname=file.name)
        add(tf)
    return path


def _zip(kit: Kit, extra: dict[str, bytes]) -> Path:
    path = kit.work / "adapter.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for file in sorted(kit.good.iterdir()):
            zf.write(file, file.name)
        for name, data in extra.items():
            zf.writestr(name, data)
    return path


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "", data: bytes = b"x"):
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, link, (len(data) if kind == tarfile.REGTYPE else 0)
    return info, io.BytesIO(data) if kind == tarfile.REGTYPE else None


def tar_dotdot(kit):
    return _tar(kit, lambda tf: tf.addfile(*_member("../../evil.txt")))


def tar_absolute(kit):
    return _tar(kit, lambda tf: tf.addfile(*_member("/tmp/evil.txt")))


def tar_symlink(kit):
    return _tar(kit, lambda tf: tf.addfile(*_member("link", tarfile.SYMTYPE, "/etc/passwd")))


def tar_hardlink(kit):
    return _tar(kit, lambda tf: tf.addfile(*_member("hard", tarfile.LNKTYPE, "/etc/passwd")))


def zip_dotdot(kit):
    return _zip(kit, {"../evil.txt": b"x"})


def zip_bomb(kit):
    return _zip(kit, {"zeros.bin": bytes(64 * 2**20)})  # compresses to ~64 KB


def not_an_archive(kit):
    path = kit.work / "adapter.zip"
    path.write_bytes(b"this is not a zip file")
    return path


# name -> (make the bad source, error type, param)
REFUSED: dict[str, tuple[Callable[[Kit], Path], type, str]] = {
    "missing config": (no_config, InvalidAdapter, "adapter.config"),
    "config not JSON": (bad_json, InvalidAdapter, "adapter.config"),
    "not LoRA": (not_lora, InvalidAdapter, "adapter.peft_type"),
    "rank above max": (rank_too_big, InvalidAdapter, "adapter.rank"),
    "other base model": (other_base, InvalidAdapter, "adapter.base_model"),
    "other base name": (other_base_name, InvalidAdapter, "adapter.base_model"),
    "unknown target": (unknown_target, InvalidAdapter, "adapter.target_modules"),
    "lm_head target": (lm_head_target, InvalidAdapter, "adapter.target_modules"),
    "truncated weights": (truncated_weights, InvalidAdapter, "adapter.weights"),
    "garbage weights": (garbage_weights, InvalidAdapter, "adapter.weights"),
    "missing weights": (no_weights, InvalidAdapter, "adapter.weights"),
    "rank/shape mismatch": (rank_mismatch, InvalidAdapter, "adapter.weights"),
    "weights outside targets": (weights_outside_targets, InvalidAdapter, "adapter.weights"),
    "symlink in folder": (symlink_inside, InvalidAdapter, "adapter.files"),
    "tar ..": (tar_dotdot, UnsafeArchive, "archive"),
    "tar absolute": (tar_absolute, UnsafeArchive, "archive"),
    "tar symlink": (tar_symlink, UnsafeArchive, "archive"),
    "tar hardlink": (tar_hardlink, UnsafeArchive, "archive"),
    "zip ..": (zip_dotdot, UnsafeArchive, "archive"),
    "zip bomb": (zip_bomb, PayloadTooLarge, "archive"),
    "not an archive": (not_an_archive, InvalidAdapter, "archive"),
}
