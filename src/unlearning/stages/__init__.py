"""The workflow's stages as plain functions, one module per rule: each reads its inputs, writes its
outputs atomically, and declares its ``unlearning STAGE`` command (commands.py). Rules list the module
of their own stage as an input, so editing the evaluation does not replan unlearning."""

from .common import training_texts
from .data import prepare_data, train_tokenizer
from .evaluate import evaluate, score
from .models import train_model
from .relearn import relearn
from .unlearn import unlearn

__all__ = ["prepare_data", "train_tokenizer", "train_model", "unlearn", "relearn", "evaluate", "score",
           "training_texts"]
