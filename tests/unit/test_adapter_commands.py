"""The ``lorag adapters`` and ``lorag brands`` commands drive the same stores."""

import json

import pytest

from lorag.cli.main import main


@pytest.fixture
def cli(tmp_path, tiny_model, monkeypatch, capsys):
    monkeypatch.setenv("LORAG_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LORAG_ENGINE__MODEL", str(tiny_model))

    def run(*argv):
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, (json.loads(out) if out.strip() else None), err

    assert run("tenants", "create", "acme")[0] == 0
    return run


def test_register_list_brand_delete(cli, tiny_lora_factory):
    code, version, _ = cli("adapters", "register", "--tenant", "acme", "voice", str(tiny_lora_factory(seed=1)))
    assert code == 0 and version["version"] == 1
    code, brand, _ = cli("brands", "create", "--tenant", "acme", "helpdesk", "--adapter", "voice",
                         "--top-k", "3", "--mode", "dense", "--filters", '{"lang": "en"}')
    assert code == 0 and brand["adapter"] == "voice" and brand["retrieval"]["top_k"] == 3
    assert [v["version"] for v in cli("adapters", "list", "--tenant", "acme")[1]] == [1]
    assert cli("brands", "update", "--tenant", "acme", "helpdesk", "--base-model")[1]["adapter"] is None
    assert [b["name"] for b in cli("brands", "list", "--tenant", "acme")[1]] == ["helpdesk"]
    assert cli("adapters", "delete", "--tenant", "acme", "voice")[0] == 0
    assert cli("brands", "delete", "--tenant", "acme", "helpdesk")[0] == 0


def test_refusal_prints_the_param(cli, tmp_path):
    (tmp_path / "empty").mkdir()
    code, _, err = cli("adapters", "register", "--tenant", "acme", "voice", str(tmp_path / "empty"))
    assert code == 2 and "adapter.config" in err
    code, _, err = cli("brands", "create", "--tenant", "acme", "helpdesk", "--adapter", "missing")
    assert code == 2 and "(adapter)" in err
