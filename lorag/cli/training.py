"""``lorag models prepare`` and ``lorag adapters train``."""

from __future__ import annotations

import argparse
from pathlib import Path

from lorag.cli.output import print_json
from lorag.app.container import Lorag


def register(subparsers) -> None:
    models = subparsers.add_parser("models", help="prepare base models")
    models_sub = models.add_subparsers(dest="action", required=True)
    prepare = models_sub.add_parser(
        "prepare", help="convert the packaged SmolLM2-135M-Instruct GGUF into an HF folder (once)")
    prepare.add_argument("--force", action="store_true", help="rebuild even if already prepared")
    prepare.set_defaults(handler=_prepare)

    train = command_group(subparsers, "adapters", "manage LoRA adapters").add_parser(
        "train", help="train a LoRA adapter for a tenant and register it",
        description="SFT on chat JSONL (loss on assistant turns only), or self-supervised "
                    "domain adaptation on the tenant's ingested chunks.")
    _train_arguments(train)
    train.set_defaults(handler=_train)


def command_group(subparsers, name: str, help: str) -> argparse._SubParsersAction:
    """The sub-command set of the top-level command ``name``, created if no other module
    has; lets several modules add commands under ``lorag adapters``."""
    parser = subparsers.choices.get(name) or subparsers.add_parser(name, help=help)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return parser.add_subparsers(dest="action", required=True)


def _train_arguments(train: argparse.ArgumentParser) -> None:
    train.add_argument("--tenant", required=True)
    train.add_argument("--name", required=True, help="adapter name to register the result under")
    data = train.add_mutually_exclusive_group(required=True)
    data.add_argument("--sft", type=Path, metavar="FILE.jsonl",
                      help='chat conversations, one {"messages": [...]} per line')
    data.add_argument("--domain", action="store_true",
                      help="continued next-token training on the tenant's ingested chunks")
    train.add_argument("--steps", type=int, default=100)
    train.add_argument("--batch-size", type=int, default=4)
    train.add_argument("--rank", type=int, default=8)
    train.add_argument("--alpha", type=int, default=None, help="default: 2 * rank")
    train.add_argument("--lr", type=float, default=1e-3)
    train.add_argument("--targets", default="q_proj,v_proj", help="comma-separated module names")
    train.add_argument("--max-length", type=int, default=512, help="SFT: tokens per conversation")
    train.add_argument("--block-size", type=int, default=256, help="domain: tokens per block")
    train.add_argument("--holdout", type=float, default=0.1, help="held-out share")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--base", default=None, help="base model folder (default: the engine's)")
    train.add_argument("--marker", default=None,
                       help="SFT: regex the answers should match; reports base vs adapter rates")
    train.add_argument("--checkpoint-every", type=int, default=50)
    train.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    train.add_argument("--out", type=Path, default=None, help="also copy the adapter folder here")
    train.add_argument("--no-register", action="store_true", help="train and evaluate only")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")


def _prepare(args: argparse.Namespace) -> None:
    from adapters.models import SMOLLM2_FOLDER, prepare_smollm2

    app = Lorag()
    path = prepare_smollm2(app.layout.models_dir / SMOLLM2_FOLDER, force=args.force)
    print_json({"model": SMOLLM2_FOLDER, "path": str(path)})


def _train(args: argparse.Namespace) -> None:
    from adapters.training import TrainingKind, TrainSpec

    app = Lorag()
    spec = TrainSpec.parse(
        name=args.name, kind=TrainingKind.DOMAIN if args.domain else TrainingKind.SFT,
        sft_file=args.sft,
        steps=args.steps, batch_size=args.batch_size, rank=args.rank, alpha=args.alpha,
        lr=args.lr, targets=tuple(t.strip() for t in args.targets.split(",") if t.strip()),
        max_length=args.max_length, block_size=args.block_size, holdout_fraction=args.holdout,
        seed=args.seed, base=args.base, marker=args.marker,
        checkpoint_every=args.checkpoint_every, resume=args.resume, out=args.out,
        register_result=not args.no_register,
        progress=app.settings.adapters.training.progress and not args.no_progress)
    try:
        print_json(app.trainer.train(args.tenant, spec).summary())
    finally:
        app.close()
