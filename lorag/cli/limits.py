"""``lorag limits show|set|reset|usage``: a tenant's limit overrides and usage.

Changes are written to the catalog; a running ``lorag serve`` applies them within
``limits.refresh_seconds`` (no restart)."""

from __future__ import annotations

import argparse

from lorag.app.container import Lorag
from lorag.app.limits import LimitValues
from lorag.app.limits.service import LimitView
from lorag.cli.output import print_json

FIELDS = tuple(LimitValues.model_fields)


def register(subparsers) -> None:
    limits = subparsers.add_parser("limits", help="per-tenant rate limits, quotas, weights, usage")
    sub = limits.add_subparsers(dest="action", required=True)
    show = sub.add_parser("show", help="a tenant's defaults, overrides and effective limits")
    show.add_argument("tenant")
    show.set_defaults(handler=_show)
    change = sub.add_parser("set", help="set (or --clear) some of a tenant's overrides")
    change.add_argument("tenant")
    for name, info in LimitValues.model_fields.items():
        kind = float if name == "weight" else int
        change.add_argument(f"--{name.replace('_', '-')}", dest=name, type=kind, default=None,
                            help=info.description)
    change.add_argument("--clear", action="append", default=[], choices=FIELDS, metavar="FIELD",
                        help="remove this override (the default applies again); repeatable")
    change.set_defaults(handler=_set)
    reset = sub.add_parser("reset", help="remove all of a tenant's overrides")
    reset.add_argument("tenant")
    reset.set_defaults(handler=_reset)
    usage = sub.add_parser("usage", help="a tenant's usage (all days, or --day YYYY-MM-DD)")
    usage.add_argument("tenant")
    usage.add_argument("--day", default=None)
    usage.set_defaults(handler=_usage)


def _print(view: LimitView) -> None:
    print_json({"tenant": view.tenant_id, "defaults": view.defaults.model_dump(),
                "overrides": view.overrides, "effective": view.effective.model_dump()})


def _show(args: argparse.Namespace) -> None:
    _print(Lorag().limits.view(args.tenant))


def _set(args: argparse.Namespace) -> None:
    changes = {name: getattr(args, name) for name in FIELDS if getattr(args, name) is not None}
    changes.update({name: None for name in args.clear})
    _print(Lorag().limits.set_overrides(args.tenant, changes))


def _reset(args: argparse.Namespace) -> None:
    _print(Lorag().limits.set_overrides(args.tenant, {}, replace=True))


def _usage(args: argparse.Namespace) -> None:
    print_json(Lorag().limits.usage(args.tenant, args.day).to_dict())
