"""``lorag ingest --tenant T [--ray [--address ADDR]] PATH...`` and ``lorag documents list|delete``."""

from __future__ import annotations

import argparse
import sys

from lorag.cli.output import print_json
from lorag.app.container import Lorag
from ingest.types import WebPages
from lorag.core.errors import InvalidInput


def register(subparsers) -> None:
    ingest = subparsers.add_parser(
        "ingest", help="ingest files and folders into a tenant's index",
        description="Ingest files (.txt .md .rst .html .pdf .docx .pptx .xlsx .csv .epub .eml), "
                    "folders of them (recursively), .jsonl files (one {id, text, title?, "
                    "metadata?} per line) and web pages (--url, --sitemap: main content only, "
                    "robots.txt obeyed, unchanged pages fetched conditionally). Unchanged "
                    "documents are skipped; changed ones replaced.")
    ingest.add_argument("--tenant", required=True)
    ingest.add_argument("paths", nargs="*", metavar="PATH")
    ingest.add_argument("--url", action="append", default=[], metavar="URL",
                        help="a web page to ingest (its URL is its id); may be repeated")
    ingest.add_argument("--sitemap", action="append", default=[], metavar="URL",
                        help="ingest every page a sitemap (or sitemap index) lists")
    ingest.add_argument("--prune", action="store_true",
                        help="also delete the tenant's documents that are not among the "
                             "inputs (files, folders, pages)")
    ingest.add_argument("--no-progress", action="store_true", help="no progress bar")
    ingest.add_argument("--ray", action="store_true",
                        help="embed on a Ray cluster with Ray Data (an actor pool, settings."
                             "ray.ingest_*); loading, chunking and writing stay here")
    ingest.add_argument("--address", default=None,
                        help="with --ray: the cluster to join (default: settings.ray.address; "
                             "none starts a local one)")
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
    inputs = [*args.paths, *(WebPages(url=url) for url in args.url),
              *(WebPages(sitemap=url) for url in args.sitemap)]
    if not inputs:
        raise InvalidInput("give a PATH, --url or --sitemap", param="paths")
    app = _ray_ingestion(args.address) if args.ray else Lorag()
    try:
        show = app.settings.ingest.progress and not args.no_progress and sys.stderr.isatty()
        report = app.documents.ingest(args.tenant, inputs, progress=show, prune=args.prune)
    finally:
        app.close()
    print_json(report.to_dict())
    return 1 if report.failed else 0


def _ray_ingestion(address: str | None) -> Lorag:
    from lorag.app.settings import Settings
    from lorag.cluster.ingest import ray_ingestion
    from lorag.cluster.runtime import connect

    settings = Settings()
    connect(settings.ray, address)
    return ray_ingestion(settings)


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
