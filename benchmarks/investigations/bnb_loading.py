"""bitsandbytes 4-bit (fp4, nf4) and 8-bit (LLM.int8) loading of a saved random-init Llama through the
workflow's loader (models.load_model); prints one JSON line per quantization (load seconds, device
memory after loading, a forward's finiteness). On CUDA only (the CPU path is tested by the suite).

    python benchmarks/investigations/bnb_loading.py --arch llama-1b
"""

from __future__ import annotations

import sys
import tempfile
import time

from unlearning.bench import harness
from unlearning.bench.paper_scale import ARCHS


def main(argv: list[str] | None = None) -> None:
    ap = harness.parser(__doc__)
    ap.add_argument("--arch", default="llama-1b", help=f"one of {list(ARCHS)}")
    a = ap.parse_args(argv)
    import torch
    from tokenizers import Tokenizer, models
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from unlearning.models import load_model

    if not torch.cuda.is_available():
        sys.exit("bnb_loading: needs CUDA")
    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        with torch.device("cuda"):
            model = LlamaForCausalLM(LlamaConfig(tie_word_embeddings=False, **ARCHS[a.arch])).to(torch.bfloat16)
        model.save_pretrained(tmp, safe_serialization=True)
        PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.BPE())).save_pretrained(tmp)
        del model
        torch.cuda.empty_cache()
        for quant in ("int8", "fp4", "nf4"):
            torch.cuda.reset_peak_memory_stats()
            t0 = time.perf_counter()
            q = load_model(tmp, quant=quant, dev=torch.device("cuda"))
            load_s = time.perf_counter() - t0
            layer = q.model.layers[0].mlp.down_proj
            ids = torch.randint(4, ARCHS[a.arch]["vocab_size"], (1, 64), device="cuda")
            with torch.no_grad():
                finite = bool(torch.isfinite(q(ids).logits.float()).all())
            harness.emit({"arch": a.arch, "quant": quant, "load_s": round(load_s, 2),
                          "layer": type(layer).__module__ + "." + type(layer).__name__,
                          "allocated_bytes": torch.cuda.memory_allocated(), "finite": finite})
            del q
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
