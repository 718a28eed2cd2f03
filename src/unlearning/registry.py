"""What a study's config can name: optimizer types and unlearning objectives, in one place.

Torch-free, so that the Snakefile reads it too. Everything else derives its tables from here: the
workflow (grades in the tables, which source files each branch depends on), ``unlearning.optim`` and
``unlearning.objectives`` (which class a name builds), the unlearning stage (which types get the run's
seed) and the report (which roles an optimizer plays in the findings). tests/test_registry.py checks
each entry against its module and against the config schema's enums.

Adding an optimizer type: one entry in OPTIMIZERS, one module under ``optim/`` defining the class or
factory it names, one entry in workflow/schemas/config.schema.yaml (its name in the type enum and an
``if``/``then`` block with its hyperparameters and their defaults). See docs/extending/adding-an-optimizer.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# The paper's grades, from the most to the least informed update (REFERENCE.md); the robust
# baselines SAM and randomized smoothing count as first order.
GRADES: tuple[str, ...] = ("second", "first", "compressed", "zeroth", "hybrid")


@dataclass(frozen=True)
class OptimizerType:
    """One optimizer type: its grade, where it lives and what the rest of the project needs to know."""

    grade: str
    module: str  # file under src/unlearning/optim/ (without .py)
    factory: str  # class (or function returning a torch.optim.Optimizer) in that module
    seeded: bool = False  # takes a `seed` hyperparameter, which defaults to the run's seed
    sign: bool = False  # updates by the sign of a gradient statistic (1-bit compression)


OPTIMIZERS: dict[str, OptimizerType] = {
    "sophia": OptimizerType("second", "second", "Sophia"),
    "adam": OptimizerType("first", "first", "adam"),
    "adamw": OptimizerType("first", "first", "adamw"),
    "sam": OptimizerType("first", "sam", "SAM"),
    "rs": OptimizerType("first", "smoothing", "RandomizedSmoothing", seeded=True),
    "signsgd": OptimizerType("compressed", "compressed", "SignSGD", sign=True),
    "signadam": OptimizerType("compressed", "compressed", "SignAdam", sign=True),
    "nbit_adam": OptimizerType("compressed", "compressed", "NBitAdam"),
    "adamw8bit": OptimizerType("compressed", "compressed", "adamw8bit"),
    "zo_sgd": OptimizerType("zeroth", "zeroth", "ZOSGD", seeded=True),
    "adazo": OptimizerType("zeroth", "zeroth", "AdaZO", seeded=True),
    # Not seeded itself: its first- and zeroth-order phases (`fo`, `zo`) are entries of their own.
    "hybrid": OptimizerType("hybrid", "hybrid", "HybridFOZO"),
}
# A hybrid's phases when its entry names none (the schema's defaults for `fo` and `zo`).
HYBRID_PHASES: dict[str, str] = {"fo": "adam", "zo": "adazo"}


@dataclass(frozen=True)
class ObjectiveType:
    """One unlearning objective: the class (an ``objectives.base.Objective``) and its module."""

    module: str  # file under src/unlearning/objectives/ (without .py)
    cls: str


OBJECTIVES: dict[str, ObjectiveType] = {
    "grad_ascent": ObjectiveType("grad_ascent", "GradAscent"),
    "grad_diff": ObjectiveType("grad_diff", "GradDiff"),
    "npo": ObjectiveType("npo", "NPO"),
    "simnpo": ObjectiveType("simnpo", "SimNPO"),
    "rmu": ObjectiveType("rmu", "RMU"),
}


def grade(type_: str) -> str:
    """The grade of optimizer type ``type_`` (ValueError naming the known types if unknown)."""
    return optimizer(type_).grade


def optimizer(type_: str) -> OptimizerType:
    """The registry entry of optimizer type ``type_`` (ValueError naming the known types if unknown)."""
    if type_ not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer type {type_!r}; known: {sorted(OPTIMIZERS)}")
    return OPTIMIZERS[type_]


def types_of(grade_: str) -> list[str]:
    """Optimizer types of one grade, in registry order."""
    return [t for t, o in OPTIMIZERS.items() if o.grade == grade_]


def types_used(spec: dict) -> list[str]:
    """Every optimizer type a config entry uses: its own, and a hybrid's phases (defaults included)."""
    types = [spec["type"]]
    if spec["type"] == "hybrid":
        for phase, default in HYBRID_PHASES.items():
            types += types_used(spec.get(phase) or {"type": default})
    return types


# Roles in the findings (report): the sign-based compressed types, and the zeroth-order ones.
SIGN_TYPES: frozenset[str] = frozenset(t for t, o in OPTIMIZERS.items() if o.sign)
ZO_TYPES: frozenset[str] = frozenset(types_of("zeroth"))
SEEDED_TYPES: frozenset[str] = frozenset(t for t, o in OPTIMIZERS.items() if o.seeded)


# ---------------------------------------------------------------------------------------------------
# Benchmark kinds and attacks. Entries name code as "module:attr" strings, resolved when first used
# (``resolve``), so this module stays torch-free. docs/extending/adding-a-benchmark.md and
# docs/extending/adding-an-attack.md say how to add one; tests/test_registry.py checks the entries
# against their modules and the schema's enums.


def resolve(ref: str):
    """The object a ``"package.module:attr"`` reference names (imported now)."""
    from importlib import import_module

    module, _, attr = ref.partition(":")
    return getattr(import_module(module), attr)


@dataclass(frozen=True)
class BenchmarkKind:
    """One benchmark kind: the files of its data folder, how they are made, read and scored."""

    layout: str  # "module:attr": {file: record fields} of its data folder (what data.io checks)
    roles: dict[str, str]  # forget/retain -> the file unlearning (and relearning) trains on
    generator: str  # "module:function"(out_dir, seed, shape) writing the synthetic benchmark
    shape: str  # "module:class" of the generator's shape (config `shape`, as keyword arguments)
    adapter: str | None  # "module:function" fetching the real benchmark (its module: DATASETS, OPTIONS)
    scorer: str  # "module:function"(model, tok, data_dir, params, subject, split, wanted, items)
    forget_metrics: tuple[str, ...]  # forget knowledge, lower is better after unlearning (table order)
    utility_metrics: tuple[str, ...]  # utility, higher is better
    criterion: tuple[str, str]  # the calibration's (forget, utility) metrics
    primary: tuple[str, str]  # the (forget, utility) metrics the findings judge by and figures plot
    qa_template: bool = False  # documents are question/answer pairs in the folder's QA template
    # further forget metrics the calibration's criterion bounds like criterion[0] (a run matches the
    # retrain model when each is at most its level + margin): MUSE's findings judge VerbMem_f too
    criterion_also: tuple[str, ...] = ()
    training_extra: tuple[str, ...] = ()  # files trained on with the retain set (target and retrain)
    tokenizer_extra: tuple[str, ...] = ()  # files the tokenizer also sees, once each


BENCHMARK_KINDS: dict[str, BenchmarkKind] = {
    "muse": BenchmarkKind(
        "unlearning.data.io:MUSE_LAYOUT", {"forget": "raw/forget.jsonl", "retain": "raw/retain1.jsonl"},
        "unlearning.data.synthetic:generate_muse", "unlearning.data.synthetic:MuseShape",
        "unlearning.data.muse:fetch_muse", "unlearning.eval.scorers:score_muse",
        ("verbmem_f", "knowmem_f"), ("knowmem_r",), ("knowmem_f", "knowmem_r"), ("knowmem_f", "knowmem_r"),
        criterion_also=("verbmem_f",), training_extra=("raw/retain2.jsonl",),
        tokenizer_extra=("privleak/forget.jsonl", "privleak/holdout.jsonl")),
    "wmdp": BenchmarkKind(
        "unlearning.data.io:WMDP_LAYOUT", {"forget": "corpora/forget.jsonl", "retain": "corpora/retain.jsonl"},
        "unlearning.data.synthetic:generate_wmdp", "unlearning.data.synthetic:WmdpShape",
        "unlearning.data.wmdp:fetch_wmdp", "unlearning.eval.scorers:score_wmdp",
        ("wmdp_acc",), ("mmlu_acc",), ("wmdp_acc", "mmlu_acc"), ("wmdp_acc", "mmlu_acc")),
    # TOFU's paper table is forget10 (REFERENCE.md); its complement retain90 is the retain set. Its
    # utility sets stand for what a pretrained model already knew, so a model trained from scratch
    # learns them alongside the fictitious authors (target and retrain alike).
    "tofu": BenchmarkKind(
        "unlearning.data.io:TOFU_LAYOUT", {"forget": "forget10.jsonl", "retain": "retain90.jsonl"},
        "unlearning.data.synthetic_tofu:generate_tofu", "unlearning.data.synthetic_tofu:TofuShape",
        "unlearning.data.tofu:fetch_tofu", "unlearning.eval.scorers:score_tofu",
        ("tofu_prob_f", "tofu_rouge_f"), ("model_utility",), ("tofu_rouge_f", "model_utility"),
        ("tofu_prob_f", "model_utility"),
        qa_template=True,
        training_extra=("real_authors_perturbed.jsonl", "world_facts_perturbed.jsonl")),
}


def benchmark_kind(kind: str) -> BenchmarkKind:
    """The registry entry of benchmark kind ``kind`` (ValueError naming the known kinds if unknown)."""
    if kind not in BENCHMARK_KINDS:
        raise ValueError(f"unknown benchmark kind {kind!r}; known: {sorted(BENCHMARK_KINDS)}")
    return BENCHMARK_KINDS[kind]


def forget_metrics(primary_first: bool = False) -> list[str]:
    """Every kind's forget metrics, in registry order (the report's vocabulary); with
    ``primary_first`` each kind's primary one leads its others (what figures plot first)."""
    return list(dict.fromkeys(m for k in BENCHMARK_KINDS.values()
                              for m in ((k.primary[0],) if primary_first else ()) + k.forget_metrics))


def utility_metrics() -> list[str]:
    """Every kind's utility metrics, in registry order."""
    return list(dict.fromkeys(m for k in BENCHMARK_KINDS.values() for m in k.utility_metrics))


@dataclass(frozen=True)
class Attack:
    """One attack applied when the model is loaded for evaluation (``none``: the model as saved).

    A quantization names either ``bnb``, the bitsandbytes settings transformers loads it with, or
    ``apply``, a "module:function"(model, **settings) -> model that changes the loaded weights; ``codes``
    is the "module:function"(weight, name) giving the codes stored for one float32 weight (qcode_change).
    ``settings``: the keyword arguments ``apply`` gets (a library's bits, group or block size; with
    ``embeddings`` true the embeddings and lm_head are quantized and counted too)."""

    label: str  # in tables and findings
    marker: str  # matplotlib marker in figures
    colour: str
    quantization: bool = False
    bnb: dict | None = None
    apply: str | None = None
    codes: str | None = None
    four_bit: bool = False  # a 4-bit quantization (the findings' four_bit attacks)
    settings: dict = field(default_factory=dict)


_CODES_INT8 = "unlearning.attacks.quantization:int8_codes"
_CODES_4BIT = "unlearning.attacks.quantization:four_bit_codes"
ATTACKS: dict[str, Attack] = {  # registry order is the tables' order
    "none": Attack("before attack", "o", "#000000"),
    "int8": Attack("INT8", "s", "#7f7f7f", True, {"load_in_8bit": True}, codes=_CODES_INT8),
    "fp4": Attack("FP4", "^", "#e377c2", True, {"load_in_4bit": True, "bnb_4bit_quant_type": "fp4"},
                  codes=_CODES_4BIT, four_bit=True),
    "nf4": Attack("NF4", "v", "#bcbd22", True, {"load_in_4bit": True, "bnb_4bit_quant_type": "nf4"},
                  codes=_CODES_4BIT, four_bit=True),
}


def _lowbit(label: str, marker: str, colour: str, **settings) -> Attack:
    """A quantizer from a library applied to the loaded weights (attacks/lowbit.py), with its settings.
    Not ``four_bit``: the findings keep judging the paper's bitsandbytes 4-bit attacks."""
    return Attack(label, marker, colour, True, apply="unlearning.attacks.lowbit:apply",
                  codes="unlearning.attacks.lowbit:codes", settings=settings)


_NF4 = {"library": "bitsandbytes", "quant_type": "nf4"}
_AO = {"library": "torchao", "algorithm": "affine"}
# Stronger quantizers (issue 24): bitsandbytes' NF4 with its largest CPU block, torchao's 3- and 2-bit
# groups, and with `_emb` the embeddings and lm_head quantized too. Not in the default study.
ATTACKS.update({
    "nf4_b4096": _lowbit("NF4 block 4096", "<", "#dbdb8d", **_NF4, blocksize=4096),
    "nf4_b64_emb": _lowbit("NF4 + embeddings", ">", "#9c9ede", **_NF4, blocksize=64, embeddings=True),
    "int3_g32": _lowbit("INT3 g32", "d", "#393b79", **_AO, bits=3, group_size=32),
    "int3_g32_emb": _lowbit("INT3 g32 + embeddings", "H", "#9edae5", **_AO, bits=3, group_size=32, embeddings=True),
    "int2_g32": _lowbit("INT2 g32", "8", "#e6550d", **_AO, bits=2, group_size=32),
    "int2_g32_emb": _lowbit("INT2 g32 + embeddings", "1", "#ff9896", **_AO, bits=2, group_size=32, embeddings=True),
    "int2_g128": _lowbit("INT2 g128", "2", "#843c39", **_AO, bits=2, group_size=128),
})
# The 4-bit quantization that findings and the summary table judge when present (FP4 gives practically
# the same model here, so it would vote twice).
PRIMARY_QUANTIZATION = "nf4"


@dataclass(frozen=True)
class StageAttack:
    """An attack that trains: a stage (and its rule) writes one checkpoint folder per setting, named
    ``{prefix}{setting}``, which evaluation loads; figures mark them with ``markers`` in setting order."""

    stage: str  # the stage (and rule) producing the checkpoints
    colour: str
    markers: tuple[str, ...]


STAGE_ATTACKS: dict[str, StageAttack] = {
    "relearn": StageAttack("relearn", "#8c564b", ("D", "P", "X", "*", "h", "p")),
}


def quantizations() -> list[str]:
    """Every quantization attack, in registry order."""
    return [n for n, a in ATTACKS.items() if a.quantization]


def four_bit() -> list[str]:
    """The 4-bit quantization attacks, in registry order."""
    return [n for n, a in ATTACKS.items() if a.four_bit]


def attack(name: str) -> Attack:
    """The entry of a load-time attack (ValueError naming the known ones if unknown)."""
    if name not in ATTACKS:
        raise ValueError(f"unknown attack {name!r}; known: {sorted(ATTACKS)} and "
                         f"{', '.join(p + '{steps}' for p in STAGE_ATTACKS)}")
    return ATTACKS[name]


def stage_attack(name: str) -> tuple[str, int] | None:
    """``(prefix, setting)`` of a stage attack's name (``relearn50`` -> ("relearn", 50)), else None."""
    for prefix in STAGE_ATTACKS:
        rest = str(name)[len(prefix):]
        if str(name).startswith(prefix) and rest.isdigit():
            return prefix, int(rest)
    return None


def is_relearn(name: str) -> bool:
    """Whether ``name`` is a relearning attack (``relearn{steps}``)."""
    found = stage_attack(name)
    return found is not None and found[0] == "relearn"


def relearn_steps(name: str) -> int:
    """Relearning steps of an attack name (``relearn{steps}``; 0 for ``none``)."""
    return 0 if name == "none" else int(str(name)[len("relearn"):])


def attack_order(names) -> list[str]:
    """Load-time attacks in registry order, then each stage attack's by setting, then the rest sorted."""
    names = list(names)
    fixed = [a for a in ATTACKS if a in names]
    found = {a: stage_attack(a) for a in names}
    staged = [a for p in STAGE_ATTACKS
              for a in sorted((a for a in names if found[a] and found[a][0] == p), key=lambda a: found[a][1])]
    return fixed + staged + sorted(set(names) - set(fixed) - set(staged))


def attacks_of(config: dict, reference: bool = False) -> list[str]:
    """The attacks a config evaluates: none, its quantizations (config order) and, on unlearned models
    (not ``reference``), each relearning step count."""
    atk = config["attacks"]
    names = ["none", *atk["quantization"]]
    if not reference:
        names += [f"relearn{s}" for s in sorted(atk["relearn"]["steps"])]
    return names
