"""io.read_jsonl / write_jsonl / validate_benchmark: every error names the file and the line."""

from __future__ import annotations

import json

import pytest

from unlearning.data.io import (
    LAYOUT,
    MC,
    MMLU,
    QA,
    TEXT,
    DataError,
    load_split,
    read_jsonl,
    validate_benchmark,
    write_jsonl,
)

GOOD_MC = {"question": "q?", "choices": ["a", "b", "c", "d"], "answer": 2}


def _write(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def _err(path, fields=None) -> str:
    with pytest.raises(DataError) as err:
        read_jsonl(path, fields)
    return str(err.value)


def test_roundtrip_and_atomic_write(tmp_path):
    recs = [{"text": "é ünïcode ✓"}, {"text": "two"}]
    path = tmp_path / "a" / "b.jsonl"
    assert write_jsonl(path, recs) == 2
    assert read_jsonl(path, TEXT) == recs
    assert not (path.parent / "b.jsonl.tmp").exists()
    assert "✓" in path.read_text(encoding="utf-8")  # written as UTF-8, not \\u escapes


def test_blank_lines_are_skipped_but_count_in_line_numbers(tmp_path):
    path = _write(tmp_path / "s.jsonl", [json.dumps({"text": "a"}), "", json.dumps({"txt": "b"})])
    assert _err(path, TEXT) == f"{path}:3: missing field 'text' (have ['txt'])"


def test_missing_field(tmp_path):
    path = _write(tmp_path / "qa.jsonl", [json.dumps({"question": "q", "answer": "a"}),
                                          json.dumps({"question": "q"})])
    msg = _err(path, QA)
    assert msg.startswith(f"{path}:2:") and "missing field 'answer'" in msg


def test_empty_split(tmp_path):
    path = _write(tmp_path / "empty.jsonl", ["", "   "])
    assert _err(path, TEXT) == f"{path}: empty split (no records)"
    (tmp_path / "zero.jsonl").write_bytes(b"")
    assert "empty split" in _err(tmp_path / "zero.jsonl")


def test_wrong_type(tmp_path):
    path = _write(tmp_path / "t.jsonl", [json.dumps({"text": "ok"}), json.dumps({"text": 5})])
    assert _err(path, TEXT) == f"{path}:2: field 'text' is int, expected str"
    path = _write(tmp_path / "mc.jsonl", [json.dumps({**GOOD_MC, "answer": "2"})])
    assert _err(path, MC) == f"{path}:1: field 'answer' is str, expected int"
    path = _write(tmp_path / "b.jsonl", [json.dumps({**GOOD_MC, "answer": True})])
    assert _err(path, MC) == f"{path}:1: field 'answer' is bool, expected int"
    path = _write(tmp_path / "c.jsonl", [json.dumps({**GOOD_MC, "choices": "abcd"})])
    assert _err(path, MC) == f"{path}:1: field 'choices' is str, expected list"


def test_bad_utf8(tmp_path):
    path = tmp_path / "bin.jsonl"
    path.write_bytes(json.dumps({"text": "fine"}).encode() + b"\n" + b'{"text": "bad \xff"}\n')
    msg = _err(path, TEXT)
    assert msg.startswith(f"{path}:2: not valid UTF-8")


def test_malformed_json(tmp_path):
    path = _write(tmp_path / "m.jsonl", [json.dumps({"text": "a"}), '{"text": "b"', "{}"])
    msg = _err(path, TEXT)
    assert msg.startswith(f"{path}:2: malformed JSON")


def test_non_object_record(tmp_path):
    path = _write(tmp_path / "l.jsonl", ['["text", "a"]'])
    assert _err(path) == f"{path}:1: record is list, expected an object"


@pytest.mark.parametrize("choices", [["a", "b", "c"], ["a", "b", "c", "d", "e"], ["a", "b", "c", 4]])
def test_bad_choices(tmp_path, choices):
    path = _write(tmp_path / "q.jsonl", [json.dumps(GOOD_MC), json.dumps({**GOOD_MC, "choices": choices})])
    assert _err(path, MC) == f"{path}:2: field 'choices' must be 4 strings"


@pytest.mark.parametrize("answer", [-1, 4, 17])
def test_answer_out_of_range(tmp_path, answer):
    path = _write(tmp_path / "q.jsonl", [json.dumps({**GOOD_MC, "answer": answer})])
    assert _err(path, MC) == f"{path}:1: field 'answer' is {answer}, expected 0-3"


def test_mmlu_needs_subject(tmp_path):
    path = _write(tmp_path / "u.jsonl", [json.dumps(GOOD_MC)])
    assert "missing field 'subject'" in _err(path, MMLU)


def test_file_not_found(tmp_path):
    assert _err(tmp_path / "nope.jsonl") == f"{tmp_path / 'nope.jsonl'}: file not found"


def test_validate_benchmark_names_the_bad_file(tmp_path):
    for name, schema in LAYOUT["wmdp"].items():
        rec = {"text": "t"} if schema is TEXT else {**GOOD_MC, "subject": "s"}
        write_jsonl(tmp_path / name, [rec, rec])
    assert validate_benchmark(tmp_path, "wmdp") == {name: 2 for name in LAYOUT["wmdp"]}
    assert load_split(tmp_path, "wmdp", "questions/forget.jsonl")[0]["answer"] == 2
    write_jsonl(tmp_path / "questions/utility.jsonl", [GOOD_MC])
    with pytest.raises(DataError, match=r"questions/utility.jsonl:1: missing field 'subject'"):
        validate_benchmark(tmp_path, "wmdp")
    (tmp_path / "corpora/retain.jsonl").unlink()
    with pytest.raises(DataError, match=r"corpora/retain.jsonl: file not found"):
        validate_benchmark(tmp_path, "wmdp")
