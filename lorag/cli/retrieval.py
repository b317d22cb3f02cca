"""``lorag search`` and ``lorag eval retrieval``."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from lorag.cli.output import print_json
from lorag.core.errors import InvalidInput
from lorag.app.container import Lorag
from lorag.core.modes import SEARCH_MODES, RetrievalMode

SEARCH_CHOICES = [mode.value for mode in SEARCH_MODES]


def register(subparsers) -> None:
    search = subparsers.add_parser("search", help="search a tenant's documents")
    search.add_argument("--tenant", required=True)
    search.add_argument("query")
    search.add_argument("--mode", choices=SEARCH_CHOICES, default=None,
                        help="default: settings (LORAG_RETRIEVAL__DEFAULT_MODE)")
    search.add_argument("-k", type=int, default=None, help="chunks to return")
    search.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE",
                        help="metadata equality, repeatable; VALUE is read as JSON when it "
                             "parses (2024, true), else as a string ('\"2024\"' for the string)")
    search.add_argument("--doc", action="append", default=None, metavar="ID",
                        help="only chunks of this document, repeatable")
    search.set_defaults(handler=_search)

    evaluate = _group(subparsers, "eval", "evaluate lorag").add_parser(
        "retrieval", help="ingest a BEIR folder and print nDCG@10 and recall@10",
        description="Ingest corpus.jsonl into the tenant (created if missing; use a tenant "
                    "holding only this corpus), then score the queries of qrels/<split>.tsv.")
    evaluate.add_argument("--tenant", required=True)
    evaluate.add_argument("--beir", required=True, type=Path, metavar="DIR")
    evaluate.add_argument("--mode", choices=[*SEARCH_CHOICES, "all"], default="all")
    evaluate.add_argument("--split", default="test")
    evaluate.set_defaults(handler=_eval)


def _group(subparsers, name: str, help: str) -> argparse._SubParsersAction:
    """The sub-commands of ``lorag <name>``, shared with other modules that add some."""
    parser = subparsers.choices.get(name) or subparsers.add_parser(name, help=help)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return parser.add_subparsers(dest="action", required=True)


def parse_filters(pairs: list[str]) -> dict | None:
    """``key=value`` strings as a filters dict; raises InvalidInput (param ``filters``)."""
    filters = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise InvalidInput(f"--filter wants KEY=VALUE; got {pair!r}", param="filters")
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        filters[key] = value if isinstance(value, (str, int, float, bool)) else raw
    return filters or None


def _search(args: argparse.Namespace) -> None:
    app = Lorag()
    try:
        hits = app.retrieval.search(args.tenant, args.query, k=args.k, mode=args.mode,
                                    filters=parse_filters(args.filter), document_ids=args.doc)
    finally:
        app.close()
    print_json([asdict(h) for h in hits])


def _eval(args: argparse.Namespace) -> None:
    from lorag.app.evaluation import evaluate

    app = Lorag()
    try:
        if not app.tenants.exists(args.tenant):
            app.tenants.create(args.tenant)
        modes = list(SEARCH_MODES) if args.mode == "all" else [RetrievalMode(args.mode)]
        result = evaluate(app, args.tenant, args.beir, modes, split=args.split,
                          progress=sys.stderr.isatty())
    finally:
        app.close()
    print_json(result)
    for mode in modes:
        print(f"{mode:8s} nDCG@10 {result[mode]['ndcg@10']:6.2f}  recall@10 "
              f"{result[mode]['recall@10']:6.2f}  ({result[mode]['queries']} queries)",
              file=sys.stderr)
