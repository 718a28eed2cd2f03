"""Reading and writing dataset splits as JSON lines, with errors that name the file and record."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

from ..registry import BENCHMARK_KINDS, benchmark_kind, resolve

# Field -> accepted Python types, per split schema (the hub datasets' own fields).
TEXT = {"text": str}
VERBMEM = {"prompt": str, "gt": str}
QA = {"question": str, "answer": str}
MC = {"question": str, "choices": list, "answer": int}
MMLU = {"question": str, "subject": str, "choices": list, "answer": int}
# TOFU's evaluation sets (locuslab/TOFU ``*_perturbed``): a paraphrase of the answer and a list of
# wrong but plausible answers. The real-authors and world-facts sets have no paraphrase (locuslab/tofu's
# copies hold question, answer, perturbed_answer); both references score ``answer`` there.
PERTURBED = {"question": str, "answer": str, "paraphrased_answer": str, "perturbed_answer": list}
UTILITY = {"question": str, "answer": str, "perturbed_answer": list}


class DataError(ValueError):
    """A dataset file that does not match its schema; the message names the file and record."""


def write_jsonl(path: str | os.PathLike, records: Iterable[Mapping[str, Any]]) -> int:
    """Write records to ``path`` atomically (temporary file, then rename); return the count."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    n = 0
    with open(tmp, "w", encoding="utf-8") as fh:
        for rec in records:
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
            n += 1
    os.replace(tmp, path)
    return n


def read_jsonl(path: str | os.PathLike, fields: Mapping[str, type] | None = None) -> list[dict]:
    """Read a JSON-lines split, checking every record against ``fields`` (name -> type).

    Raises DataError naming the file and 1-based line number for bad encoding, malformed JSON,
    a missing field, a wrong type, a multiple-choice record without 4 string choices or an
    out-of-range answer, and for an empty split.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    try:
        raw = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        line = path.read_bytes()[: err.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: not valid UTF-8 ({err.reason})") from None
    records: list[dict] = []
    for lineno, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}:{lineno}: malformed JSON ({err.msg})") from None
        if not isinstance(rec, dict):
            raise DataError(f"{path}:{lineno}: record is {type(rec).__name__}, expected an object")
        if fields:
            _check_record(path, lineno, rec, fields)
        records.append(rec)
    if not records:
        raise DataError(f"{path}: empty split (no records)")
    return records


def _check_record(path: Path, lineno: int, rec: dict, fields: Mapping[str, type]) -> None:
    for name, typ in fields.items():
        if name not in rec:
            raise DataError(f"{path}:{lineno}: missing field '{name}' (have {sorted(rec)})")
        value = rec[name]
        # bool is an int subclass; an answer of True is a schema error, not index 1.
        if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
            raise DataError(
                f"{path}:{lineno}: field '{name}' is {type(value).__name__}, expected {typ.__name__}"
            )
    if "perturbed_answer" in fields:
        wrong = rec["perturbed_answer"]
        if not wrong or not all(isinstance(w, str) for w in wrong):
            raise DataError(f"{path}:{lineno}: field 'perturbed_answer' must be a non-empty list of strings")
    if "choices" in fields:
        choices = rec["choices"]
        if len(choices) != 4 or not all(isinstance(c, str) for c in choices):
            raise DataError(f"{path}:{lineno}: field 'choices' must be 4 strings")
        if not 0 <= rec["answer"] < 4:
            raise DataError(f"{path}:{lineno}: field 'answer' is {rec['answer']}, expected 0-3")


# The files of each benchmark kind and their schemas; generators and adapters write exactly these.
# The registry (registry.BENCHMARK_KINDS) names each kind's layout; ``layout(kind)`` looks it up.
MUSE_LAYOUT: dict[str, Mapping[str, type]] = {
    "raw/forget.jsonl": TEXT,
    "raw/retain1.jsonl": TEXT,
    "raw/retain2.jsonl": TEXT,
    "raw/holdout.jsonl": TEXT,
    "verbmem/forget.jsonl": VERBMEM,
    "knowmem/forget_qa.jsonl": QA,
    "knowmem/retain_qa.jsonl": QA,
    "knowmem/forget_qa_icl.jsonl": QA,
    "knowmem/retain_qa_icl.jsonl": QA,
    "privleak/forget.jsonl": TEXT,
    "privleak/retain.jsonl": TEXT,
    "privleak/holdout.jsonl": TEXT,
}
WMDP_LAYOUT: dict[str, Mapping[str, type]] = {
    "corpora/forget.jsonl": TEXT,
    "corpora/retain.jsonl": TEXT,
    "questions/forget.jsonl": MC,
    "questions/utility.jsonl": MMLU,
}
# TOFU: one file per hub config of locuslab/TOFU (split ``train``), named as the hub names them.
TOFU_LAYOUT: dict[str, Mapping[str, type]] = {
    "full.jsonl": QA,
    **{f"forget{n}.jsonl": QA for n in ("01", "05", "10")},
    **{f"retain{n}.jsonl": QA for n in ("99", "95", "90")},
    **{f"forget{n}_perturbed.jsonl": PERTURBED for n in ("01", "05", "10")},
    "retain_perturbed.jsonl": PERTURBED,
    "real_authors_perturbed.jsonl": UTILITY,
    "world_facts_perturbed.jsonl": UTILITY,
}
LAYOUT: dict[str, dict[str, Mapping[str, type]]] = {"muse": MUSE_LAYOUT, "wmdp": WMDP_LAYOUT, "tofu": TOFU_LAYOUT}


def layout(kind: str) -> Mapping[str, Mapping[str, type]]:
    """The files of benchmark kind ``kind`` and their record fields (its registry entry's layout)."""
    return resolve(benchmark_kind(kind).layout)


# Role of each split in training and unlearning (see docs/extending/architecture.md).
ROLES: dict[str, dict[str, str]] = {kind: dict(k.roles) for kind, k in BENCHMARK_KINDS.items()}

# A TOFU benchmark's question/answer template (the schema's benchmarks.<name>.qa_template): ``prompt``
# is what the model is asked, ``answer`` follows it; training documents and evaluation prompts share it.
# This default is ours, the form of TOFU's own Phi-1.5 template ("Question: {q}\nAnswer: {a}").
QA_PROMPT = "Question: {question}\nAnswer:"
QA_TEMPLATE = {"prompt": QA_PROMPT, "answer": " {answer}"}
# The template a TOFU data folder was prepared with (stages/data.py writes it beside the splits).
TEMPLATE_FILE = "qa_template.json"


class QADocument(str):
    """A question/answer training document: the whole text (a ``str``, so it goes wherever a document
    goes) and ``prompt``, its leading question part, on which no loss falls (TOFU and open-unlearning
    train on the answer's tokens only; unlearning.data.chunking masks the prompt's)."""

    prompt: str

    def __new__(cls, prompt: str, answer: str) -> "QADocument":
        doc = super().__new__(cls, prompt + answer)
        doc.prompt = prompt
        return doc

    def __getnewargs__(self) -> tuple[str, str]:  # pickling rebuilds it from its two parts
        return self.prompt, str(self)[len(self.prompt):]


def qa_document(question: str, answer: str, template: Mapping[str, str] | None = None) -> QADocument:
    """A question/answer pair in ``template`` (default ``QA_TEMPLATE``)."""
    t = template or QA_TEMPLATE
    return QADocument(t["prompt"].format(question=question), t["answer"].format(answer=answer))


def document(rec: Mapping[str, Any], template: Mapping[str, str] | None = None) -> str:
    """The training text of a record: its ``text``, or a question/answer pair in ``template``."""
    if "text" in rec:
        return rec["text"]
    return qa_document(rec["question"], rec["answer"], template)


def read_template(bench_dir: str | os.PathLike) -> dict[str, str]:
    """The question/answer template a benchmark folder was prepared with (``QA_TEMPLATE`` if none)."""
    path = Path(bench_dir) / TEMPLATE_FILE
    if not path.exists():
        return dict(QA_TEMPLATE)
    return json.loads(path.read_text(encoding="utf-8"))


def write_template(bench_dir: str | os.PathLike, template: Mapping[str, str]) -> None:
    """Record a TOFU folder's question/answer template; bad placeholders are a one-line error."""
    for key, field in (("prompt", "question"), ("answer", "answer")):
        text = template.get(key)
        if not isinstance(text, str) or "{" + field + "}" not in text:
            raise DataError(f"qa_template.{key} must be a string holding {{{field}}}, got {text!r}")
        try:
            text.format(**{field: ""})
        except (KeyError, IndexError, ValueError) as err:
            raise DataError(f"qa_template.{key}: {text!r} is not a template of {{{field}}} ({err})") from None
    Path(bench_dir).joinpath(TEMPLATE_FILE).write_text(
        json.dumps({"prompt": template["prompt"], "answer": template["answer"]}, indent=2) + "\n", encoding="utf-8")


def load_split(bench_dir: str | os.PathLike, kind: str, name: str) -> list[dict]:
    """Read one split of a benchmark folder with the schema LAYOUT gives it."""
    return read_jsonl(Path(bench_dir) / name, layout(kind)[name])


def validate_benchmark(bench_dir: str | os.PathLike, kind: str) -> dict[str, int]:
    """Check every file of a benchmark folder; return record counts per file."""
    return {name: len(load_split(bench_dir, kind, name)) for name in layout(kind)}


def write_benchmark(out_dir: str | os.PathLike, kind: str, files: Mapping[str, Iterable[dict]],
                    manifest: Mapping[str, Any]) -> dict[str, int]:
    """Write every LAYOUT file of ``kind`` (an adapter's records), validate the folder, then write
    manifest.json (``manifest`` plus kind, source and the record counts)."""
    out = Path(out_dir)
    missing = set(layout(kind)) - set(files)
    if missing:  # pragma: no cover - adapter bug
        raise DataError(f"adapter did not produce {sorted(missing)}")
    for name in layout(kind):
        write_jsonl(out / name, files[name])
    counts = validate_benchmark(out, kind)
    full = {"kind": kind, "source": "hub", **manifest, "counts": counts}
    tmp = out / "manifest.json.tmp"
    tmp.write_text(json.dumps(full, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, out / "manifest.json")
    return counts
