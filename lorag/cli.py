"""The ``lorag`` command line. Each area registers its own sub-commands."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from typing import Callable

from lorag.errors import LoragError
from lorag.logs import setup_logging

# Modules with a ``register(subparsers)`` function adding their commands.
COMMAND_MODULES = ["lorag.tenant_commands", "adapters.train_commands", "adapters.commands",
                   "server.commands", "ingest.commands", "retrieval.commands"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lorag", description=__doc__)
    parser.add_argument("--log-level", default=None, help="DEBUG, INFO, WARNING...")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def print_json(value) -> None:
    print(json.dumps(value, indent=2, default=str))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level or "WARNING")
    handler: Callable[[argparse.Namespace], int | None] = args.handler
    try:
        return handler(args) or 0
    except LoragError as exc:
        where = f" ({exc.param})" if exc.param else ""
        print(f"error{where}: {exc.message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
