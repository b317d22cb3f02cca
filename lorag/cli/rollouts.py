"""``lorag rollouts show|split|shadow|rollback|evaluation put|show|delete``, ``lorag adapters promote|aliases|gates``,
``lorag answers list|show|delete|rate`` and ``lorag audit list|verify``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lorag.app.container import Lorag
from lorag.cli.output import print_json
from lorag.cli.training import command_group
from lorag.core.errors import InvalidInput


def register(subparsers) -> None:
    _rollout_commands(command_group(subparsers, "rollouts",
                                    "traffic splits, shadow targets, rollback, readout"))
    _answer_commands(command_group(subparsers, "answers", "stored answers and their feedback"))
    _audit_commands(command_group(subparsers, "audit", "the hash-chained audit log"))


def add_adapter_commands(sub) -> None:
    """``lorag adapters promote|aliases|gates`` (called by lorag.cli.adapters)."""
    promote = sub.add_parser("promote", help="point an alias (default stable) at a version; "
                                             "to stable only through the gates")
    promote.add_argument("--tenant", required=True)
    promote.add_argument("name")
    promote.add_argument("version", type=int)
    promote.add_argument("--alias", default="stable")
    promote.add_argument("--force", action="store_true", help="promote although gates fail "
                                                              "(recorded)")
    promote.set_defaults(handler=_promote)
    aliases = sub.add_parser("aliases", help="an adapter's aliases")
    aliases.add_argument("--tenant", required=True)
    aliases.add_argument("name")
    aliases.set_defaults(handler=lambda a: print_json(Lorag().adapters.aliases(a.tenant, a.name)))
    gates = sub.add_parser("gates", help="the promotion gates a version passes or fails")
    gates.add_argument("--tenant", required=True)
    gates.add_argument("name")
    gates.add_argument("version", type=int)
    gates.set_defaults(handler=lambda a: print_json(
        [g.to_dict() for g in Lorag().rollouts.gates(a.tenant, a.name, a.version)]))


def _rollout_commands(sub) -> None:
    show = sub.add_parser("show", help="per-target readout of a brand")
    _brand(show)
    show.set_defaults(handler=lambda a: print_json(Lorag().rollouts.readout(a.tenant, a.brand)))
    split = sub.add_parser("split", help="send TARGET=PERCENT shares of a brand's traffic to "
                                         "other targets (none: end the split)")
    _brand(split)
    split.add_argument("arms", nargs="*", metavar="TARGET=PERCENT")
    split.set_defaults(handler=_split)
    shadow = sub.add_parser("shadow", help="copy a share of requests to a shadow target")
    _brand(shadow)
    shadow.add_argument("target", nargs="?", default=None, help="omit to stop shadowing")
    shadow.add_argument("--rate", type=float, default=0.1)
    shadow.set_defaults(handler=_shadow)
    rollback = sub.add_parser("rollback", help="take a target (default: all) out of the split")
    _brand(rollback)
    rollback.add_argument("--target", default=None)
    rollback.set_defaults(handler=lambda a: print_json(
        Lorag().rollouts.rollback(a.tenant, a.brand, a.target).to_dict()))
    _evaluation_commands(sub.add_parser(
        "evaluation", help="a brand's evaluation set: the answer gate's questions"
    ).add_subparsers(dest="evaluation_action", required=True))


def _evaluation_commands(sub) -> None:
    put = sub.add_parser("put", help="replace the brand's set with a JSON Lines file (the "
                                     "format of `lorag eval chat`), validated line by line")
    _brand(put)
    put.add_argument("file", type=Path)
    put.set_defaults(handler=_put_evaluation)
    show = sub.add_parser("show", help="the brand's set")
    _brand(show)
    show.set_defaults(handler=lambda a: print_json(
        Lorag().evaluation_sets.get(a.tenant, a.brand).to_dict()))
    delete = sub.add_parser("delete", help="delete the brand's set (no answer gate then)")
    _brand(delete)
    delete.set_defaults(handler=_delete_evaluation)


def _answer_commands(sub) -> None:
    lst = sub.add_parser("list", help="a tenant's stored answers")
    lst.add_argument("--tenant", required=True)
    lst.add_argument("--brand", default=None)
    lst.add_argument("--limit", type=int, default=20)
    lst.set_defaults(handler=lambda a: print_json(
        [vars(x) for x in Lorag().answers.list(a.tenant, brand=a.brand, limit=a.limit)[0]]))
    show = sub.add_parser("show", help="one stored answer with its provenance")
    show.add_argument("--tenant", required=True)
    show.add_argument("id")
    show.set_defaults(handler=lambda a: print_json(vars(Lorag().answers.get(a.tenant, a.id))))
    delete = sub.add_parser("delete", help="delete a stored answer")
    delete.add_argument("--tenant", required=True)
    delete.add_argument("id")
    delete.set_defaults(handler=_delete_answer)
    rate = sub.add_parser("rate", help="rate a stored answer +1 or -1 (once)")
    rate.add_argument("--tenant", required=True)
    rate.add_argument("id")
    rate.add_argument("rating", type=int, choices=[1, -1])
    rate.add_argument("--comment", default=None)
    rate.add_argument("--tag", action="append", default=[])
    rate.set_defaults(handler=lambda a: print_json(Lorag().rollouts.rate(
        a.tenant, a.id, a.rating, a.comment, a.tag)[0].to_dict()))


def _audit_commands(sub) -> None:
    verify = sub.add_parser("verify", help="check the hash chain; exit 1 when it is broken")
    verify.set_defaults(handler=_verify)
    lst = sub.add_parser("list", help="audit records (of one tenant with --tenant)")
    lst.add_argument("--tenant", default=None)
    lst.add_argument("--limit", type=int, default=100)
    lst.set_defaults(handler=lambda a: print_json(
        [r.to_dict() for r in Lorag().audit.list(a.tenant, limit=a.limit)]))


def _brand(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tenant", required=True)
    parser.add_argument("brand")


def _promote(args: argparse.Namespace) -> None:
    print_json(Lorag().rollouts.promote(args.tenant, args.name, args.version, alias=args.alias,
                                        force=args.force))


def _split(args: argparse.Namespace) -> None:
    arms = []
    for text in args.arms:
        target, _, percent = text.rpartition("=")
        try:
            arms.append({"target": target, "percent": float(percent)})
        except ValueError:
            raise InvalidInput(f"expected TARGET=PERCENT, got {text!r}", param="split") from None
    print_json(Lorag().rollouts.set_split(args.tenant, args.brand, arms).to_dict())


def _shadow(args: argparse.Namespace) -> None:
    shadow = {"target": args.target, "rate": args.rate} if args.target else None
    print_json(Lorag().rollouts.set_shadow(args.tenant, args.brand, shadow).to_dict())


def _put_evaluation(args: argparse.Namespace) -> None:
    try:
        data = args.file.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read {args.file}: {exc.strerror}", param="file") from None
    print_json(Lorag().evaluation_sets.put(args.tenant, args.brand, data).to_dict())


def _delete_evaluation(args: argparse.Namespace) -> None:
    Lorag().evaluation_sets.delete(args.tenant, args.brand)
    print_json({"deleted": args.brand, "object": "evaluation.set"})


def _delete_answer(args: argparse.Namespace) -> None:
    Lorag().answers.delete(args.tenant, args.id)
    print_json({"deleted": args.id})


def _verify(args: argparse.Namespace) -> int:
    result = Lorag().audit.verify()
    print_json(result.to_dict())
    if not result.ok:
        print(f"audit log broken at record {result.bad_seq}: {result.reason}", file=sys.stderr)
        return 1
    return 0
