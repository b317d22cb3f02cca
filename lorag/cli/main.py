"""The ``lorag`` command line. Each area registers its own sub-commands."""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Callable

from lorag.cli import adapters, ingest, quality, retrieval, rollouts, serve, tenants, training
from lorag.cli import limits
from lorag.core.audit import set_actor
from lorag.core.errors import LoragError
from lorag.core.logs import setup_logging

# Each area's ``register(subparsers)`` adds its commands.
COMMAND_GROUPS = (tenants, training, adapters, serve, ingest, retrieval, quality, rollouts, limits)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lorag", description=__doc__)
    parser.add_argument("--log-level", default=None, help="DEBUG, INFO, WARNING...")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for group in COMMAND_GROUPS:
        group.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level or "WARNING")
    set_actor(f"cli:{_user()}")  # who changes brands, aliases and keys, for the audit log
    handler: Callable[[argparse.Namespace], int | None] = args.handler
    try:
        return handler(args) or 0
    except LoragError as exc:
        where = f" ({exc.param})" if exc.param else ""
        print(f"error{where}: {exc.message}", file=sys.stderr)
        return 2


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name in this environment (a bare container)
        return "unknown"


if __name__ == "__main__":
    sys.exit(main())
