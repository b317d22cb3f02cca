"""``lorag ingest --tenant T PATH...`` and ``lorag documents list|delete``."""

from __future__ import annotations

import argparse
import sys

from lorag.cli.output import print_json
from lorag.app.container import Lorag


def register(subparsers) -> None:
    ingest = subparsers.add_parser(
        "ingest", help="ingest files and folders into a tenant's index",
        description="Ingest .txt .md .rst .html .pdf files, folders of them (recursively) and "
                    ".jsonl files (one {id, text, title?, metadata?} per line). Unchanged "
                    "documents are skipped; changed ones replaced.")
    ingest.add_argument("--tenant", required=True)
    ingest.add_argument("paths", nargs="+", metavar="PATH")
    ingest.add_argument("--prune", action="store_true",
                        help="also delete the tenant's documents that are not in PATHs")
    ingest.add_argument("--no-progress", action="store_true", help="no progress bar")
    ingest.set_defaults(handler=_ingest)

    documents = subparsers.add_parser("documents", help="list or delete a tenant's documents")
    sub = documents.add_subparsers(dest="action", required=True)
    listing = sub.add_parser("list", help="list documents (ordered by id)")
    listing.add_argument("--tenant", required=True)
    listing.add_argument("--limit", type=int, default=100)
    listing.add_argument("--offset", type=int, default=0)
    listing.set_defaults(handler=_list)
    delete = sub.add_parser("delete", help="delete documents with their chunks and vectors")
    delete.add_argument("--tenant", required=True)
    delete.add_argument("ids", nargs="+", metavar="ID")
    delete.set_defaults(handler=_delete)


def _ingest(args: argparse.Namespace) -> int:
    app = Lorag()
    try:
        show = app.settings.ingest.progress and not args.no_progress and sys.stderr.isatty()
        report = app.documents.ingest(args.tenant, args.paths, progress=show, prune=args.prune)
    finally:
        app.close()
    print_json(report.to_dict())
    return 1 if report.failed else 0


def _list(args: argparse.Namespace) -> None:
    app = Lorag()
    try:
        print_json([vars(d) for d in app.documents.list(args.tenant, limit=args.limit,
                                                        offset=args.offset)])
    finally:
        app.close()


def _delete(args: argparse.Namespace) -> None:
    app = Lorag()
    try:
        for document_id in args.ids:
            app.documents.delete(args.tenant, document_id)
    finally:
        app.close()
    print_json({"deleted": args.ids})
