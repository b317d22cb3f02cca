"""``lorag tenants create|list|delete|keys``."""

from __future__ import annotations

import argparse

from lorag.cli.output import print_json
from lorag.app.container import Lorag


def register(subparsers) -> None:
    tenants = subparsers.add_parser("tenants", help="manage tenants and their API keys")
    sub = tenants.add_subparsers(dest="action", required=True)
    create = sub.add_parser("create", help="create a tenant and print its first API key")
    create.add_argument("tenant")
    create.add_argument("--name", default=None, help="display name")
    create.set_defaults(handler=_create)
    sub.add_parser("list", help="list tenants").set_defaults(handler=_list)
    delete = sub.add_parser("delete", help="delete a tenant with all its data")
    delete.add_argument("tenant")
    delete.set_defaults(handler=_delete)
    key = sub.add_parser("new-key", help="issue another API key for a tenant")
    key.add_argument("tenant")
    key.set_defaults(handler=_new_key)


def _create(args: argparse.Namespace) -> None:
    app = Lorag()
    tenant = app.tenants.create(args.tenant, args.name)
    key = app.tenants.issue_key(tenant.id)
    print_json({"tenant": tenant.id, "api_key": key.secret,
                "note": "the key is shown once; only its hash is stored"})


def _list(args: argparse.Namespace) -> None:
    print_json([vars(t) for t in Lorag().tenants.list()])


def _delete(args: argparse.Namespace) -> None:
    Lorag().tenants.delete(args.tenant)
    print_json({"deleted": args.tenant})


def _new_key(args: argparse.Namespace) -> None:
    key = Lorag().tenants.issue_key(args.tenant)
    print_json({"tenant": key.tenant_id, "api_key": key.secret, "key_id": key.id})
