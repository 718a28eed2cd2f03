"""Tokenizers and Llama-architecture models: build, save atomically, load (optionally quantized).

Loading uses safetensors only and never runs remote code, so nothing is unpickled.
"""

from __future__ import annotations

import logging
import os
import shutil
import warnings
from pathlib import Path
from typing import Any, Iterable

import torch

from .cpu_linear import use_onednn_linear
from .registry import attack, quantizations, resolve

_log = logging.getLogger(__name__)

SPECIAL = {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}


# How a job says it is a GPU job: the profile (or the user) sets DEVICE_ENV=cuda, or SLURM gave the
# job GPUs. Either way a job that then finds no CUDA stops at start instead of running on the CPU.
DEVICE_ENV = "UNLEARNING_DEVICE"
_SLURM_GPU_VARS = ("SLURM_GPUS_ON_NODE", "SLURM_JOB_GPUS", "SLURM_STEP_GPUS")


class NoCuda(RuntimeError):
    """A GPU job found no CUDA device (the message is one line naming why the job is a GPU job)."""


def gpu_job() -> str | None:
    """Why this process must run on a GPU (``UNLEARNING_DEVICE=cuda``, or the SLURM variable that
    gave it GPUs), or None."""
    want = os.environ.get(DEVICE_ENV, "auto").strip().lower() or "auto"
    if want not in ("auto", "cuda", "cpu"):
        raise ValueError(f"{DEVICE_ENV}={want!r}: expected cuda, cpu or auto")
    if want != "auto":
        return f"{DEVICE_ENV}=cuda" if want == "cuda" else None
    for var in _SLURM_GPU_VARS:
        value = os.environ.get(var, "").strip()
        if value and value not in ("0", "(null)", "N/A"):
            return f"{var}={value}"
    return None


def device() -> torch.device:
    """CUDA when present, else CPU (the same code path serves both). ``UNLEARNING_DEVICE=cpu`` forces
    the CPU; a GPU job (``gpu_job()``) that finds no CUDA raises ``NoCuda`` instead of falling back."""
    if os.environ.get(DEVICE_ENV, "").strip().lower() == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda")
    why = gpu_job()
    if why:
        raise NoCuda(f"a GPU job ({why}) finds no CUDA device: torch {torch.__version__} (CUDA build "
                     f"{torch.version.cuda or 'none'}) sees {torch.cuda.device_count()} GPU(s); install a CUDA "
                     f"torch that this node's driver supports (scripts/gpu-check.sh), or set {DEVICE_ENV}=cpu")
    return torch.device("cpu")


def dtype_for(dev: torch.device) -> torch.dtype:
    """Storage and inference dtype: bf16 on CUDA (as the paper's 7B models), fp32 on CPU (bf16
    matmuls are slow there). Training keeps fp32 weights everywhere (``TRAIN_DTYPE``)."""
    return torch.bfloat16 if dev.type == "cuda" else torch.float32


# Weights that are trained (unlearning, relearning, fitting) are fp32 on every device: an Adam step of
# lr 1e-5 is below half a bf16 ulp of most weights and would be rounded away (tests/test_zo_bf16.py
# measures it). On CUDA the forward and backward still run in bf16 (``autocast``): fp32 masters,
# bf16 compute, as FSDP2's MixedPrecisionPolicy does for sharded runs.
TRAIN_DTYPE = torch.float32


def autocast(dev: torch.device):
    """bf16 autocast on CUDA (fp32 weights, bf16 matmuls); nothing on the CPU (all fp32, unchanged)."""
    import contextlib

    if dev.type == "cuda":
        # no cast cache: it would keep a bf16 copy of every weight for the whole step (2 bytes per
        # weight, 12.5 GiB at 7B; unlearning paper-scale); recasting costs a weight read per pass
        return torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False)
    return contextlib.nullcontext()


def enable_checkpointing(model: Any) -> None:
    """Activation checkpointing (HF's, non-reentrant): each decoder layer keeps only its input and
    recomputes the rest in the backward. Call before ``distributed.shard`` (FSDP2's hooks then run
    inside the recomputation and gather the layer again). Changes memory and time, not results."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.2's name
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    model.config.use_cache = False


def train_tokenizer(texts: Iterable[str], vocab_size: int, out_dir: str | Path) -> Any:
    """Train a byte-level BPE tokenizer on ``texts`` and save it as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[SPECIAL["pad_token"], SPECIAL["bos_token"], SPECIAL["eos_token"], SPECIAL["unk_token"]],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    # Every encoded text starts with <s>, as Llama tokenizers do; generation prompts get it too.
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", tok.token_to_id("<s>"))]
    )
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, **SPECIAL)
    fast.padding_side = "right"
    _atomic_save(lambda tmp: fast.save_pretrained(tmp), out_dir)
    return fast


def load_tokenizer(path: str | Path) -> Any:
    """Load a saved fast tokenizer (local files only)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(path), local_files_only=_is_local(path))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def build_model(arch: dict, vocab_size: int, seed: int) -> torch.nn.Module:
    """A randomly initialised LlamaForCausalLM from the config's ``model`` entry (no download)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=arch["hidden_size"],
        intermediate_size=arch["intermediate_size"],
        num_hidden_layers=arch["num_layers"],
        num_attention_heads=arch["num_heads"],
        num_key_value_heads=arch["num_heads"],
        max_position_embeddings=arch["max_len"],
        tie_word_embeddings=False,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    model = LlamaForCausalLM(cfg)
    use_onednn_linear(model)  # a no-op for every product that later runs on a GPU
    return model


def _is_local(path: str | Path) -> bool:
    return Path(path).exists()


MODEL_SOURCE_KEY = "benchmarks.<bench>.target / .retrain"


def _in_hub_cache(model_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(model_id, "config.json"), str)


def _hub_reachable(timeout: float = 3.0) -> bool:
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0") or constants.HF_HUB_OFFLINE:
        return False
    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)),
                                 timeout=timeout).close()
        return True
    except OSError:
        return False


def check_model_source(source: str | Path, key: str = MODEL_SOURCE_KEY) -> bool:
    """Fail fast, in one line naming the config ``key`` and the download command, when ``source`` is
    neither a local folder nor a hub id in the local hub cache and the hub cannot be reached (compute
    nodes often have no network). Returns True when it can be loaded without the network."""
    if _is_local(source) or _in_hub_cache(str(source)):
        return True
    if _hub_reachable():
        return False
    raise ValueError(f"{key}: model {str(source)!r} is not a local folder nor in the hub cache "
                     f"({os.environ.get('HF_HOME', '~/.cache/huggingface')}), and the hub is unreachable; on a "
                     f"machine with network run `hf download {source}` (same HF_HOME), or give a local folder")


def load_model(path: str | Path, quant: str | None = None, dev: torch.device | None = None,
               dtype: torch.dtype | None = None) -> Any:
    """Load a causal LM from ``path`` (a local folder, a hub id in the hub cache, or a hub id when
    online; otherwise one line naming the config key, see ``check_model_source``).

    ``quant`` is None or a quantization of registry.ATTACKS (``int8``: LLM.int8, ``fp4``/``nf4``: 4-bit,
    through bitsandbytes with the entry's settings; or the entry's ``apply`` function). Safetensors only,
    remote code off. ``dtype``: of the weights (default ``dtype_for(dev)``; ``TRAIN_DTYPE`` to train).
    """
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    dev = dev or device()
    offline_ok = check_model_source(path)
    kwargs: dict[str, Any] = {
        "use_safetensors": True,
        "trust_remote_code": False,
        "local_files_only": offline_ok,
        "dtype": dtype or dtype_for(dev),
    }
    entry = None
    if quant is not None:
        entry = attack(quant) if quant in quantizations() else None
        if entry is None:
            raise ValueError(f"unknown quantization {quant!r}; expected one of {quantizations()}")
    if entry is not None and entry.bnb is not None:
        bnb = dict(entry.bnb)
        if bnb.get("load_in_8bit"):
            # LLM.int8 casts fp32 activations to fp16 and says so at *every* matmul (4000 log lines
            # per evaluation on the CPU); once is enough.
            if dev.type == "cpu":
                _log.info("LLM.int8 on the CPU: fp32 activations are cast to fp16 for the int8 matmul")
            logging.getLogger("bitsandbytes.autograd._functions").setLevel(logging.ERROR)
        if bnb.get("load_in_4bit"):
            bnb["bnb_4bit_compute_dtype"] = dtype_for(dev)
        kwargs["quantization_config"] = BitsAndBytesConfig(**bnb)
        kwargs["device_map"] = {"": dev.index or 0} if dev.type == "cuda" else {"": "cpu"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = AutoModelForCausalLM.from_pretrained(str(path), **kwargs)
    if entry is None or entry.bnb is None:
        if entry is not None:  # a quantization applied to the loaded weights
            model = resolve(entry.apply)(model, **entry.settings)
        model.to(dev)
        if dev.type == "cpu":
            use_onednn_linear(model)
    elif dev.type == "cpu":
        portable_4bit_path(model)
    model.eval()
    return model


# bitsandbytes' CPU path for 4-bit layers: on CPUs with AVX512-BF16 (>= 0.49), Linear4bit repacks its
# weights at the first eval-mode forward for a bf16 kernel; elsewhere it dequantizes and multiplies in
# the compute dtype (fp32 here). We always take the second ("portable") one, so that a study gives
# the same numbers on every CPU and any layer width loads (the packed layout needs out_features % 32).
CPU_4BIT_PATH = "portable"


def portable_4bit_path(model: torch.nn.Module) -> int:
    """Turn bitsandbytes' AVX512-BF16 packed path off in every 4-bit layer of ``model``; returns how
    many layers were switched. Must run before the first forward (the repacking happens there)."""
    n = 0
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False
            n += 1
    return n


# files of a model folder that a copy keeps: weights (safetensors only), configs, tokenizer
_COPIED = ("*.safetensors", "*.safetensors.index.json", "config.json", "generation_config.json",
           "tokenizer*", "special_tokens_map.json", "*.model", "vocab*", "merges.txt", "added_tokens.json")


def copy_model(source: str | Path, out_dir: str | Path, key: str = MODEL_SOURCE_KEY) -> Path:
    """Copy a model folder, or a hub id's snapshot (from the hub cache, or downloaded when online), to
    ``out_dir`` byte for byte: no loading, no dtype conversion (an fp16 source stays fp16), no GPU.
    Safetensors only: a folder without ``*.safetensors`` is refused in one line naming ``key``."""
    offline_ok = check_model_source(source, key)
    if _is_local(source):
        folder = Path(source)
    else:
        from huggingface_hub import snapshot_download

        folder = Path(snapshot_download(str(source), local_files_only=offline_ok, allow_patterns=list(_COPIED)))
    files = sorted({f for pattern in _COPIED for f in folder.glob(pattern) if f.is_file()})
    if not any(f.name.endswith(".safetensors") for f in files):
        raise ValueError(f"{key}: {source!s} has no .safetensors weights (pickled checkpoints are not loaded)")

    def write(tmp: Path) -> None:
        for f in files:
            shutil.copyfile(f, tmp / f.name)  # follows the hub cache's symlinks to the blobs

    _atomic_save(write, out_dir)
    return Path(out_dir)


def read_weights(model_dir: str | Path) -> dict[str, torch.Tensor]:
    """Every tensor of a saved model's ``*.safetensors`` files (all shards), on the CPU, without
    building the model; FileNotFoundError when the folder has none."""
    from safetensors.torch import load_file

    files = sorted(Path(model_dir).glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{model_dir}: no .safetensors weights")
    state: dict[str, torch.Tensor] = {}
    for f in files:
        state.update(load_file(str(f), device="cpu"))
    return state


def save_model(model: Any, tok: Any, out_dir: str | Path, state_dict: dict | None = None) -> None:
    """Save model (safetensors) and tokenizer to ``out_dir`` atomically: a half-written folder never
    carries the final name, so a killed job leaves nothing that looks finished. ``state_dict``: the
    weights to write instead of the model's own (a sharded run's gathered fp32 weights; they are saved
    in the dtype ``dtype_for(device())``: bf16 on CUDA, whatever the training kept, fp32 on the CPU)."""
    dt = dtype_for(device())
    if state_dict is None and any(p.is_floating_point() and p.dtype != dt for p in model.parameters()):
        state_dict = model.state_dict()  # fp32 masters of a GPU run: saved in bf16, as before
    if state_dict is not None:
        state_dict = {k: v.to(dt) if v.is_floating_point() else v for k, v in state_dict.items()}

    def write(tmp: Path) -> None:
        model.save_pretrained(tmp, safe_serialization=True, state_dict=state_dict)
        tok.save_pretrained(tmp)

    _atomic_save(write, out_dir)


def _atomic_save(write, out_dir: str | Path) -> None:
    out = Path(out_dir)
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    write(tmp)
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)


def count_parameters(model: torch.nn.Module) -> int:
    """Number of parameters (all of them; unlearning updates every weight unless RMU restricts it)."""
    return sum(p.numel() for p in model.parameters())
