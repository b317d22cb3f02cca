"""LoRA training: SFT on chat conversations (loss on assistant turns only) and
self-supervised domain adaptation on a tenant's ingested chunks.

    spec = TrainSpec(name="pirate", kind=TrainingKind.SFT, sft_file=Path("pirate.jsonl"), steps=80)
    result = app.trainer.train("acme", spec)      # synchronous; or app.trainer.start(...) -> job id
    result.metrics["heldout"]                     # base vs adapter loss / perplexity
"""

from adapters.training.spec import TrainingKind, TrainResult, TrainSpec
from adapters.training.trainer import Trainer

__all__ = ["TrainResult", "TrainSpec", "Trainer", "TrainingKind"]
