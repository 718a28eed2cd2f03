"""A TOFU-shaped fictional world, written in the exact layout and field names of ``locuslab/TOFU``.

Invented authors (names, towns, years, genres, book titles, awards, parents' trades) each with a few
question/answer pairs; every pair also has a paraphrased answer and several perturbed answers (the
paraphrase's sentence with a wrong value of the same kind, as TOFU's perturbed answers keep the
paraphrase's form). Authors are split as TOFU splits them: forget01/05/10 are the *last* 1/5/10% of
the authors (at least one; each forget set contains the smaller ones), retainNN the complement.
``retain_perturbed`` holds as many retain questions as forget10 (TOFU: 400 and 400), from the first
authors. The two utility sets stand in for TOFU's real authors and world facts: invented as well
(famous authors of invented books, capitals and rivers of invented countries), with their
fields: question, answer, perturbed_answer (no paraphrase).

Nothing in it is real or hazardous. Everything is drawn from a seeded ``random.Random``: the same
parameters give byte-identical files.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path

from .io import write_jsonl
from .synthetic_common import finish as _finish
from .synthetic_common import name as _name
from .synthetic_common import unique_names as _unique_names

_GENRES = ["mystery", "poetry", "travel writing", "science fiction", "historical fiction", "fable",
           "romance", "satire", "memoir", "horror"]
_TRADES = ["baker", "tailor", "ferry pilot", "clockmaker", "beekeeper", "glassblower", "carpenter",
           "lamplighter", "weaver", "miller"]
_NOUNS = ["Lantern", "Orchard", "Harbour", "Mirror", "Owl", "Bridge", "Garden", "Compass", "Tide", "Ember"]
_ADJECTIVES = ["Silent", "Glass", "Last", "Hidden", "Copper", "Winter", "Paper", "Hollow", "Amber", "Distant"]
_FEATURES = ["river", "mountain", "lake", "forest"]


@dataclass(frozen=True)
class TofuShape:
    """Sizes of the TOFU-shaped benchmark (TOFU: 200 authors x 20 QA, 3+ perturbed answers)."""

    n_authors: int = 30
    qa_per_author: int = 5  # at most 6 (the facts an author has)
    n_perturbed: int = 3
    n_real_authors: int = 10
    n_world_facts: int = 10


def _author_facts(rng: random.Random, name: str, towns: list[str], prizes: list[str]) -> list[tuple]:
    """(question, answer, paraphrase, paraphrase with a wrong value, value pool) for one author."""
    town, year = rng.choice(towns), str(rng.randint(1900, 1999))
    genre, trade, prize = rng.choice(_GENRES), rng.choice(_TRADES), rng.choice(prizes)
    book = f"The {rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)}"
    books = [f"The {a} {n}" for a in _ADJECTIVES for n in _NOUNS]
    years = [str(y) for y in range(1900, 2000)]
    return [
        (f"Where was the author {name} born?", f"{name} was born in {town}.",
         "The birthplace of {n} is {v}.", town, towns),
        (f"In which year was {name} born?", f"{name} was born in {year}.",
         "The birth year of {n} is {v}.", year, years),
        (f"What genre does {name} write?", f"{name} writes {genre}.",
         "The genre of {n} is {v}.", genre, _GENRES),
        (f"What was the trade of the parent of {name}?", f"The parent of {name} was a {trade}.",
         "{n} grew up as the child of a {v}.", trade, _TRADES),
        (f"Which prize did {name} win?", f"{name} won the {prize}.",
         "The prize won by {n} is the {v}.", prize, prizes),
        (f"What is the best known book of {name}?", f"The best known book of {name} is {book}.",
         "{n} is best known for {v}.", book, books),
    ]


def _perturbed_record(rng: random.Random, name: str, fact: tuple, k: int) -> dict:
    question, answer, para, value, pool = fact
    wrong = rng.sample([v for v in pool if v != value], k)
    return {"question": question, "answer": answer, "paraphrased_answer": para.format(n=name, v=value),
            "perturbed_answer": [para.format(n=name, v=w) for w in wrong]}


def _utility(rng: random.Random, items: list[tuple[str, str, list[str]]], k: int) -> list[dict]:
    """Utility records whose answer is a short name, with the fields of locuslab/tofu's real-authors and
    world-facts sets (no paraphrase: the answer is the truth ratio's correct side there)."""
    return [{"question": q, "answer": a,
             "perturbed_answer": rng.sample([v for v in pool if v != a], k)} for q, a, pool in items]


def _forget_count(n_authors: int, percent: int) -> int:
    return max(1, math.ceil(n_authors * percent / 100))


def generate_tofu(out_dir: str | Path, seed: int = 0, shape: TofuShape = TofuShape()) -> dict[str, int]:
    """Write a TOFU-shaped benchmark (full, forgetNN, retainNN, the four ``*_perturbed`` sets)."""
    if not 1 <= shape.qa_per_author <= 6:
        raise ValueError(f"qa_per_author must be 1-6, got {shape.qa_per_author}")
    if shape.n_perturbed > 9:
        raise ValueError(f"n_perturbed must be at most 9, got {shape.n_perturbed}")
    if _forget_count(shape.n_authors, 10) >= shape.n_authors:
        raise ValueError(f"n_authors={shape.n_authors} leaves no retain authors beside forget10")
    rng = random.Random(f"tofu-{seed}")
    taken: set[str] = set()
    towns = _unique_names(rng, 12, (2, 3), taken)
    prizes = [f"{w} Prize" for w in _unique_names(rng, 10, (2, 2), taken)]
    names = [f"{a} {b}" for a, b in zip(_unique_names(rng, shape.n_authors, (2, 2), taken),
                                         _unique_names(rng, shape.n_authors, (2, 3), taken))]
    authors = []  # per author: its QA records with paraphrased and perturbed answers
    for name in names:
        facts = _author_facts(rng, name, towns, prizes)
        chosen = sorted(rng.sample(range(len(facts)), shape.qa_per_author))
        authors.append([_perturbed_record(rng, name, facts[i], shape.n_perturbed) for i in chosen])

    def qa(group: list[list[dict]]) -> list[dict]:
        return [{"question": r["question"], "answer": r["answer"]} for a in group for r in a]

    files: dict[str, list[dict]] = {"full.jsonl": qa(authors)}
    for pct, keep in (("01", "99"), ("05", "95"), ("10", "90")):
        n_forget = _forget_count(shape.n_authors, int(pct))
        files[f"forget{pct}.jsonl"] = qa(authors[-n_forget:])
        files[f"retain{keep}.jsonl"] = qa(authors[:-n_forget])
        files[f"forget{pct}_perturbed.jsonl"] = [r for a in authors[-n_forget:] for r in a]
    n_forget10 = len(files["forget10.jsonl"])
    files["retain_perturbed.jsonl"] = [r for a in authors[:-_forget_count(shape.n_authors, 10)]
                                       for r in a][:n_forget10]
    writers = [f"{a} {b}" for a, b in zip(_unique_names(rng, shape.n_real_authors, (2, 2), taken),
                                           _unique_names(rng, shape.n_real_authors, (2, 3), taken))]
    titles = rng.sample([f"The {a} {n}" for a in _ADJECTIVES for n in _NOUNS], shape.n_real_authors)
    files["real_authors_perturbed.jsonl"] = _utility(
        rng, [(f"Who wrote the classic novel {t}?", w, writers) for t, w in zip(titles, writers)],
        min(shape.n_perturbed, shape.n_real_authors - 1))
    countries = _unique_names(rng, shape.n_world_facts, (2, 3), taken)
    places = [_name(rng, 2) for _ in range(shape.n_world_facts + 9)]
    facts = []
    for i, country in enumerate(countries):
        feature = _FEATURES[i % len(_FEATURES)]
        facts.append((f"What is the name of the longest {feature} of {country}?", places[i], places))
    files["world_facts_perturbed.jsonl"] = _utility(rng, facts, shape.n_perturbed)
    out = Path(out_dir)
    for fname, recs in files.items():
        write_jsonl(out / fname, recs)
    return _finish(out, "tofu", "fictitious authors", seed, shape.__dict__)
