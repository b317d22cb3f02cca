"""``lorag adapters register|list|delete`` and ``lorag brands create|update|list|delete``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lorag.cli.training import command_group
from lorag.cli.output import print_json
from lorag.cli.rollouts import add_adapter_commands
from lorag.core.errors import InvalidInput
from lorag.core.modes import RetrievalMode
from lorag.app.container import Lorag


def register(subparsers) -> None:
    _adapter_commands(command_group(subparsers, "adapters", "manage LoRA adapters"))
    _brand_commands(command_group(subparsers, "brands", "manage brands (adapter, prompt, retrieval)"))


def _adapter_commands(sub) -> None:
    reg = sub.add_parser("register", help="validate a PEFT LoRA folder or archive and store it "
                                          "as the next version of NAME")
    reg.add_argument("--tenant", required=True)
    reg.add_argument("name")
    reg.add_argument("path", type=Path, help="adapter folder, or .zip / .tar / .tar.gz of one")
    reg.add_argument("--promote", action="store_true", help="make it the stable (through the "
                     "promotion gates); without it no alias moves")
    reg.add_argument("--force", action="store_true", help="with --promote: even if gates fail")
    reg.set_defaults(handler=_register)
    lst = sub.add_parser("list", help="list a tenant's adapter versions")
    lst.add_argument("--tenant", required=True)
    lst.add_argument("name", nargs="?", default=None)
    lst.set_defaults(handler=_list)
    delete = sub.add_parser("delete", help="delete an adapter (every version, or one)")
    delete.add_argument("--tenant", required=True)
    delete.add_argument("name")
    delete.add_argument("--version", type=int, default=None)
    delete.set_defaults(handler=_delete)
    add_adapter_commands(sub)


def _brand_commands(sub) -> None:
    create = sub.add_parser("create", help="create a brand")
    _brand_arguments(create)
    create.set_defaults(handler=_brand_create)
    update = sub.add_parser("update", help="change a brand's adapter, prompt or retrieval defaults")
    _brand_arguments(update)
    update.add_argument("--base-model", action="store_true", help="use no adapter")
    update.set_defaults(handler=_brand_update)
    lst = sub.add_parser("list", help="list a tenant's brands")
    lst.add_argument("--tenant", required=True)
    lst.set_defaults(handler=_brand_list)
    delete = sub.add_parser("delete", help="delete a brand (its adapter stays)")
    delete.add_argument("--tenant", required=True)
    delete.add_argument("name")
    delete.set_defaults(handler=_brand_delete)


def _brand_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tenant", required=True)
    parser.add_argument("name")
    parser.add_argument("--adapter", default=None, help="target: adapter name (= name@stable), "
                        "name@alias, name@vN or name@latest (default: the base model)")
    parser.add_argument("--system-prompt", default=None)
    parser.add_argument("--top-k", type=int, default=None, help="chunks retrieved per question")
    parser.add_argument("--mode", choices=[mode.value for mode in RetrievalMode], default=None,
                        help="retrieval mode")
    parser.add_argument("--filters", default=None, help='metadata filters as JSON, e.g. {"lang": "en"}')
    parser.add_argument("--quality", default=None, metavar="JSON",
                        help='answer checks as JSON (replaces them whole), e.g. {"grounding": '
                             '"abstain", "threshold": 0.5, "fallback": "...", "redact_output": true}')
    parser.add_argument("--response-format", default=None, metavar="JSON",
                        help="the brand's default output format in OpenAI's shape, e.g. "
                             '{"type": "json_object"} or {"type": "json_schema", "json_schema": '
                             '{"name": "answer", "schema": {...}}}; {"type": "text"}: none')


def _register(args: argparse.Namespace) -> None:
    app = Lorag()
    version = app.adapters.register(args.tenant, args.name, args.path)
    result = version.to_dict()
    if args.promote:
        result["promotion"] = app.rollouts.promote(args.tenant, args.name, version.version,
                                                   force=args.force)
    print_json(result)


def _list(args: argparse.Namespace) -> None:
    print_json([v.to_dict() for v in Lorag().adapters.list(args.tenant, args.name)])


def _delete(args: argparse.Namespace) -> None:
    removed = Lorag().adapters.delete(args.tenant, args.name, args.version)
    print_json({"deleted": [v.to_dict() for v in removed]})


def _brand_fields(args: argparse.Namespace) -> dict:
    fields = {"adapter": args.adapter, "system_prompt": args.system_prompt, "top_k": args.top_k,
              "mode": args.mode, "filters": _filters(args.filters),
              "quality": _json_object(args.quality, "--quality", "quality"),
              "response_format": _json_object(args.response_format, "--response-format",
                                              "response_format")}
    return {k: v for k, v in fields.items() if v is not None}


def _json_object(text: str | None, flag: str, param: str) -> dict | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        raise InvalidInput(f"{flag} must be a JSON object", param=param) from None
    return value  # BrandQuality.parse / parse_response_format say what is wrong with it


def _filters(text: str | None) -> dict | None:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        raise InvalidInput("--filters must be a JSON object", param="filters") from None


def _brand_create(args: argparse.Namespace) -> None:
    print_json(Lorag().brands.create(args.tenant, args.name, **_brand_fields(args)).to_dict())


def _brand_update(args: argparse.Namespace) -> None:
    fields = _brand_fields(args)
    if args.base_model:
        fields["adapter"] = None
    print_json(Lorag().brands.update(args.tenant, args.name, **fields).to_dict())


def _brand_list(args: argparse.Namespace) -> None:
    print_json([b.to_dict() for b in Lorag().brands.list(args.tenant)])


def _brand_delete(args: argparse.Namespace) -> None:
    Lorag().brands.delete(args.tenant, args.name)
    print_json({"deleted": args.name})
