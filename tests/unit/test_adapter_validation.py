"""Every refused adapter raises a typed error naming the wrong part; nothing is stored."""

import shutil
import tarfile
import zipfile

import pytest

from tests.adapter_cases import REFUSED, Kit
from tests.adapter_fixtures import adapter_settings, app, lora, other_base_lora  # noqa: F401
from adapters.validation import InvalidAdapter
from lorag.app.container import Lorag
from server.errors import http_status


@pytest.fixture
def kit(tiny_lora_factory, other_base_lora, tmp_path):  # noqa: F811
    work = tmp_path / "case"
    work.mkdir()
    return Kit(tiny_lora_factory(seed=1), work, tiny_lora_factory, other_base_lora)


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_refused_with_typed_error_and_nothing_stored(app, kit, case):  # noqa: F811
    make, error, param = REFUSED[case]
    source = make(kit)
    with pytest.raises(error) as err:
        app.adapters.register("acme", "support", source)
    assert err.value.param == param, err.value.message
    assert app.adapters.list("acme") == []
    stored = [p for p in app.layout.adapters_dir.rglob("*") if ".staging" not in p.parts]
    assert stored == []


def test_base_name_check_can_be_relaxed(tmp_path, tiny_model, kit):
    from tests.adapter_cases import other_base, other_base_name

    relaxed = Lorag(adapter_settings(tmp_path / "relaxed", tiny_model, check_base_name=False))
    relaxed.tenants.create("acme")
    assert relaxed.adapters.register("acme", "renamed", other_base_name(kit)).version == 1
    shutil.rmtree(kit.work / "lora")
    with pytest.raises(Exception) as err:  # shapes are always checked
        relaxed.adapters.register("acme", "wrong", other_base(kit))
    assert err.value.param == "adapter.base_model"
    relaxed.close()


@pytest.mark.parametrize("kind", ["zip", "tar.gz", "nested zip"])
def test_archives_are_accepted(app, kit, kind):  # noqa: F811
    path = kit.work / ("adapter.zip" if "zip" in kind else "adapter.tar.gz")
    prefix = "my-adapter/" if kind.startswith("nested") else ""
    if "zip" in kind:
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            for file in kit.good.iterdir():
                zf.write(file, prefix + file.name)
    else:
        with tarfile.open(path, "w:gz") as tf:
            for file in kit.good.iterdir():
                tf.add(file, arcname=prefix + file.name)
    version = app.adapters.register("acme", "support", path)
    assert (version.path / "adapter_config.json").is_file()


def test_archive_over_upload_limit(tmp_path, tiny_model, kit):
    small = Lorag(adapter_settings(tmp_path / "small", tiny_model, max_upload_bytes=1000))
    small.tenants.create("acme")
    path = shutil.make_archive(str(kit.work / "adapter"), "zip", kit.good)
    with pytest.raises(Exception) as err:
        small.adapters.register("acme", "support", path)
    assert (err.value.param, http_status(err.value)[0]) == ("archive", 413)
    small.close()


def test_engine_limited_to_some_modules_refuses_adapters_that_target_others(tmp_path, tiny_model,
                                                                            tiny_lora_factory):
    settings = adapter_settings(tmp_path / "limited", tiny_model)
    settings.engine.lora_target_modules = ["qkv_proj"]  # vLLM's packed q, k, v
    limited = Lorag(settings)
    limited.tenants.create("acme")
    assert limited.adapters.register("acme", "attention", tiny_lora_factory(seed=1)).version == 1
    mlp = tiny_lora_factory(seed=1, targets=("q_proj", "up_proj"))
    with pytest.raises(InvalidAdapter) as err:
        limited.adapters.register("acme", "mlp", mlp)
    assert err.value.param == "adapter.target_modules" and "up_proj" in err.value.message
    assert [a.name for a in limited.adapters.list("acme")] == ["attention"]
    limited.close()


def test_adapter_outside_narrowed_engine_modules_is_refused_at_use_not_served_silently(
        tmp_path, tiny_model, tiny_lora_factory):
    from lorag.core.errors import Conflict

    data = tmp_path / "narrowed"
    first = Lorag(adapter_settings(data, tiny_model))  # every module wrapped
    first.tenants.create("acme")
    version = first.adapters.register("acme", "voice", tiny_lora_factory(seed=1))  # q_proj, v_proj
    first.close()
    for served, ok in ((["q_proj"], False), (["qkv_proj"], True), (["q_proj", "v_proj"], True)):
        settings = adapter_settings(data, tiny_model)
        settings.engine.lora_target_modules = served
        app = Lorag(settings)
        if ok:
            assert app.adapters.resolve("acme", "voice").int_id == version.id
        else:
            with pytest.raises(Conflict) as err:
                app.adapters.resolve("acme", "voice")
            assert err.value.param == "adapter" and "v_proj" in err.value.message
        app.close()


def test_engine_refuses_to_start_with_target_modules_the_model_lacks(tmp_path, tiny_model):
    import asyncio

    from adapters.engines import build_engine
    from adapters.settings import EngineSettings
    from lorag.core.errors import InvalidInput

    settings = EngineSettings(model=str(tiny_model), lora_target_modules=["q_proj", "foo_proj"])
    engine = build_engine(settings, model=str(tiny_model), work_dir=tmp_path / "engine")
    with pytest.raises(InvalidInput) as err:
        asyncio.run(engine.warm_up())
    assert err.value.param == "engine.lora_target_modules"
    assert "foo_proj" in err.value.message and "q_proj" in err.value.message.split("modules:")[1]
    assert not engine.ready()
