"""Evaluation: MUSE metrics (VerbMem, KnowMem, Min-K%/PrivLeak) and lm-eval-style multiple choice.

All scores are on the 0-100 scale the benchmarks report; every function puts the model in eval
mode under ``torch.no_grad()`` and works on CPU or CUDA (inputs go to ``model.device``).
"""

from .mc import mc_accuracy, mc_correct, mc_predictions, mc_prompt
from .muse import (
                   KNOWMEM_STOP,
                   auc,
                   cut_at_stop,
                   knowmem,
                   knowmem_details,
                   knowmem_prompt,
                   knowmem_scores,
                   mink_from_logprobs,
                   mink_scores,
                   privleak,
                   rouge_l,
                   text_logprobs,
                   verbmem,
                   verbmem_details,
                   verbmem_scores,
)

__all__ = ["verbmem", "verbmem_scores", "verbmem_details", "knowmem", "knowmem_scores", "knowmem_details",
           "knowmem_prompt", "cut_at_stop",
           "KNOWMEM_STOP", "rouge_l", "mink_scores", "mink_from_logprobs", "text_logprobs", "auc",
           "privleak", "mc_accuracy", "mc_correct", "mc_predictions", "mc_prompt"]
