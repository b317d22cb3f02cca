"""``lorag eval chat``: a brand answers a question set; answer metrics with intervals."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from lorag.app.container import Lorag
from lorag.cli.output import print_json
from lorag.cli.retrieval import _group


def register(subparsers) -> None:
    chat = _group(subparsers, "eval", "evaluate lorag").add_parser(
        "chat", help="answer a question set as a brand; answer metrics with 95%% intervals",
        description="Each line of --set is {\"question\", \"reference\"?, \"gold_ids\"?}. The "
                    "brand answers through the real engine (temperature 0); groundedness, "
                    "citation precision/recall, answer relevance, context precision/recall "
                    "and token F1 / ROUGE-L are printed with bootstrap intervals and saved as JSON.")
    chat.add_argument("--tenant", required=True)
    chat.add_argument("--brand", required=True)
    chat.add_argument("--set", required=True, type=Path, metavar="FILE.jsonl", dest="set_file")
    chat.add_argument("--against", default=None, metavar="BRAND",
                      help="a second brand answering the same questions: paired differences")
    chat.add_argument("--out", type=Path, default=None, metavar="FILE.json",
                      help="where the JSON report goes (default: eval-chat-TENANT-BRAND.json)")
    chat.add_argument("--max-tokens", type=int, default=None,
                      help="completion tokens per answer (default: chat.default_max_tokens)")
    chat.add_argument("--no-progress", action="store_true", help="no progress bar")
    chat.set_defaults(handler=_eval_chat)


def _eval_chat(args: argparse.Namespace) -> None:
    from lorag.app.quality.evaluation import evaluate_chat, load_set

    items = load_set(args.set_file)  # a bad file fails before any model loads
    app = Lorag()
    try:
        for brand in filter(None, (args.brand, args.against)):
            app.brands.get(args.tenant, brand)
        report = asyncio.run(_run(app, args, items, evaluate_chat))
    finally:
        app.close()
    out = args.out or Path(f"eval-chat-{args.tenant}-{args.brand}.json")
    out.write_text(json.dumps(report, indent=2))
    print_json({k: v for k, v in report.items() if k != "brands"} |
               {"metrics": {b: r["metrics"] for b, r in report["brands"].items()}, "report": str(out)})
    _print_table(report)


async def _run(app: Lorag, args: argparse.Namespace, items, evaluate_chat) -> dict:
    await app.engine.warm_up()
    try:
        return await evaluate_chat(app.chat, app.answer_checks.metrics, args.tenant, args.brand,
                                   items, against=args.against, max_tokens=args.max_tokens,
                                   bar=not args.no_progress and sys.stderr.isatty())
    finally:
        await app.engine.shutdown()


def _print_table(report: dict) -> None:
    def cell(interval: dict) -> str:
        if interval["mean"] is None:
            return "n/a"
        return f"{interval['mean']:.3f} [{interval['low']:.3f}, {interval['high']:.3f}]"

    metrics = report["brands"][report["brand"]]["metrics"]
    for name, interval in metrics.items():
        line = f"{name:18s} {cell(interval):28s}"
        if "differences" in report:
            line += f" vs {report['against']}: {cell(report['differences'][name])}"
        print(line, file=sys.stderr)
