"""Reading benchmark records from the Hugging Face Hub or from a local copy of it.

The adapters (muse.py, wmdp.py, mmlu.py) read through ``load_records`` / ``read_path`` and write the
LAYOUT of io.py with ``io.write_benchmark``; adapters.py dispatches a config entry to its adapter.

Local copies. A source folder (a benchmark's ``source``, or ``local_path``) may name either
- a snapshot of the hub repository, e.g. made with
  ``hf download --repo-type dataset muse-bench/MUSE-News --local-dir DIR`` (``huggingface-cli
  download`` in older huggingface_hub). The hub repos keep one folder per config and one parquet file
  per split, ``<config>/<split>-00000-of-00001.parquet``, and name them in the README's ``configs:``
  block (``path: <config>/<split>-*``); when README.md is there its ``configs`` are followed exactly
  as ``datasets`` does, else the ``<config>/<split>-*.parquet`` convention is used (also
  ``<config>/<split>/*.parquet`` of the hub's parquet-converter branch and ``.jsonl``/``.json``
  files named like the parquet ones); or
- a folder written by ``datasets``' ``save_to_disk``: ``DIR/<config>/`` (a DatasetDict of splits),
  or ``DIR/`` itself when it holds a DatasetDict.
Local reads use pyarrow directly and never touch the network.

No network. Before asking the hub, the hub endpoint is probed with a short timeout (5 s; env
``UNLEARNING_HUB_TIMEOUT``), so an unreachable hub fails at once rather than after ``datasets``'
retries (about 25 s per file). With ``HF_HUB_OFFLINE=1`` (or ``HF_DATASETS_OFFLINE=1``) there is no
probe and ``datasets`` serves only its cache. Either way a failure is a one-line ``HubUnavailable``
naming the repository, the download command and the config key to set.
"""

from __future__ import annotations

import glob
import itertools
import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from .io import LAYOUT, DataError

__all__ = ["HubUnavailable", "config_key", "load_records", "local_or_hub", "read_path", "resolve_limits",
           "select_fields"]

DEFAULT_TIMEOUT_S = 5.0


class HubUnavailable(DataError):
    """The hub could not be reached (or refused) and no local copy was given."""


# --------------------------------------------------------------------------------------------------
# Messages


def config_key(name: str | None, key: str = "source") -> str:
    return f"benchmarks.{name or '<name>'}.{key}"


def download_hint(repo_id: str, local_dir: str = "DIR") -> str:
    return f"hf download --repo-type dataset {repo_id} --local-dir {local_dir}"


def _one_line(text: str, limit: int = 240) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def unavailable(repo_id: str, what: str, reason: str, *, key: str, local_dir: str = "DIR",
                set_to: str = "DIR", offline: bool = False, note: str = "") -> HubUnavailable:
    """A one-line HubUnavailable: what failed, the download command, the config key to set."""
    tail = ("HF_HUB_OFFLINE is set, and the Hugging Face cache has no copy" if offline else
            "or set HF_HUB_OFFLINE=1 to use a copy already in the Hugging Face cache")
    return HubUnavailable(
        f"cannot load {repo_id} ({what}) from the Hugging Face Hub: {_one_line(reason)}. "
        f"Download it with `{download_hint(repo_id, local_dir)}`{note} and set {key}: {set_to} "
        f"({tail})."
    )


# --------------------------------------------------------------------------------------------------
# Hub access


def is_offline() -> bool:
    """True when huggingface_hub / datasets are told to stay offline."""
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        if os.environ.get(var, "").strip().upper() in {"1", "ON", "YES", "TRUE"}:
            return True
    try:
        import datasets

        return bool(datasets.config.HF_HUB_OFFLINE)
    except Exception:  # pragma: no cover - datasets missing or changed
        return False


def _endpoint() -> str:
    try:
        from huggingface_hub import constants

        return constants.ENDPOINT.rstrip("/")
    except Exception:  # pragma: no cover
        return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def probe(repo_id: str, timeout: float | None = None) -> str | None:
    """Return None when the hub answers (any HTTP status), else the reason it could not be reached."""
    if timeout is None:
        timeout = float(os.environ.get("UNLEARNING_HUB_TIMEOUT", DEFAULT_TIMEOUT_S))
    req = urllib.request.Request(f"{_endpoint()}/api/datasets/{repo_id}", method="HEAD")
    try:
        with urllib.request.urlopen(req, timeout=timeout):
            return None
    except urllib.error.HTTPError:
        return None  # reachable; 401/404 and the like are reported by datasets itself
    except (urllib.error.URLError, OSError, ValueError) as err:
        reason = getattr(err, "reason", err)
        return f"hub endpoint {_endpoint()} unreachable ({_one_line(reason, 120)})"


_CHECKED: dict[str, str | None] = {}


def _hub_error_types() -> tuple[type[BaseException], ...]:
    types: list[type[BaseException]] = [ConnectionError, TimeoutError]
    try:
        from huggingface_hub import errors as hf_errors

        types += [hf_errors.HfHubHTTPError, hf_errors.LocalEntryNotFoundError]
        if hasattr(hf_errors, "OfflineModeIsEnabled"):
            types.append(hf_errors.OfflineModeIsEnabled)
    except Exception:  # pragma: no cover
        pass
    try:
        from datasets.exceptions import DatasetNotFoundError

        types.append(DatasetNotFoundError)
    except Exception:  # pragma: no cover
        pass
    return tuple(types)


def _load_hub(repo_id: str, config: str, split: str, limit: int | None, *, key: str,
              local_dir: str, set_to: str, note: str = "") -> list[dict]:
    what = f"config '{config}', split '{split}'"
    offline = is_offline()
    if not offline:
        if repo_id not in _CHECKED:
            _CHECKED[repo_id] = probe(repo_id)
        if _CHECKED[repo_id] is not None:
            raise unavailable(repo_id, what, _CHECKED[repo_id], key=key, local_dir=local_dir,
                              set_to=set_to, note=note)
    import datasets

    try:
        if limit is not None and not offline:
            # Stream: read only the first `limit` rows instead of downloading the whole config.
            ds = datasets.load_dataset(repo_id, config, split=split, streaming=True)
            return [dict(r) for r in itertools.islice(ds, limit)]
        ds = datasets.load_dataset(repo_id, config, split=split)
        if limit is not None and limit < len(ds):
            ds = ds.select(range(limit))
        return ds.to_list()
    except _hub_error_types() as err:
        raise unavailable(repo_id, what, f"{type(err).__name__}: {err}", key=key,
                          local_dir=local_dir, set_to=set_to, offline=offline, note=note) from None


# --------------------------------------------------------------------------------------------------
# Local copies


def _read_file(path: Path) -> list[dict]:
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not valid UTF-8 ({err.reason})") from None
    if suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            data = None  # JSON lines under a .json name
        if isinstance(data, list):
            return data
        if isinstance(data, dict):
            return [data]
    records = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise DataError(f"{path}:{lineno}: malformed JSON ({err.msg})") from None
    return records


def _readme_configs(root: Path) -> dict[str, dict[str, list[str]]]:
    """``configs:`` of a hub README's YAML header: config -> split -> path patterns."""
    readme = root / "README.md"
    if not readme.is_file():
        return {}
    text = readme.read_text(encoding="utf-8", errors="replace")
    if not text.startswith("---"):
        return {}
    end = text.find("\n---", 3)
    if end < 0:
        return {}
    import yaml

    try:
        meta = yaml.safe_load(text[3:end]) or {}
    except yaml.YAMLError:
        return {}
    out: dict[str, dict[str, list[str]]] = {}
    for entry in meta.get("configs") or []:
        if not isinstance(entry, dict) or "config_name" not in entry:
            continue
        files = entry.get("data_files")
        splits: dict[str, list[str]] = {}
        if isinstance(files, str):
            splits["train"] = [files]
        elif isinstance(files, list):
            for item in files:
                if isinstance(item, dict) and "split" in item:
                    paths = item.get("path")
                    splits[item["split"]] = [paths] if isinstance(paths, str) else list(paths or [])
        elif isinstance(files, dict):
            splits = {s: [p] if isinstance(p, str) else list(p) for s, p in files.items()}
        out[str(entry["config_name"])] = splits
    return out


_DATA_SUFFIXES = (".parquet", ".jsonl", ".json")


def _glob(root: Path, pattern: str) -> list[Path]:
    hits = [Path(p) for p in glob.glob(str(root / pattern))]
    return sorted(p for p in hits if p.is_file() and p.suffix.lower() in _DATA_SUFFIXES)


def _convention_files(root: Path, config: str, split: str) -> list[Path]:
    for pattern in (f"{config}/{split}-*.parquet", f"{config}/{split}/*.parquet",
                    f"{config}/{split}.parquet", f"{config}/{split}-*.jsonl",
                    f"{config}/{split}.jsonl", f"{config}/{split}.json"):
        files = _glob(root, pattern)
        if files:
            return files
    return []


def _saved_dataset(root: Path, config: str) -> Any | None:
    """A ``save_to_disk`` DatasetDict for ``config`` under ``root``, if there is one."""
    for base in (root / config, root):
        if (base / "dataset_dict.json").is_file():
            import datasets

            return datasets.load_from_disk(str(base))
    return None


def _local_splits(root: Path, config: str) -> list[str]:
    names = set(_readme_configs(root).get(config, {}))
    cfg_dir = root / config
    if cfg_dir.is_dir():
        for p in cfg_dir.iterdir():
            if p.suffix.lower() in _DATA_SUFFIXES:
                names.add(p.name.split("-")[0].split(".")[0])
            elif p.is_dir() and any(p.glob("*.parquet")):
                names.add(p.name)
    return sorted(names)


def _load_local(root: Path, config: str, split: str) -> list[dict] | None:
    """Records of ``config``/``split`` from a local copy, or None when the split is not there."""
    saved = _saved_dataset(root, config)
    if saved is not None:
        if split not in saved:
            return None
        return saved[split].to_list()
    readme = _readme_configs(root)
    files: list[Path] = []
    if config in readme:
        if split not in readme[config]:
            return None
        for pattern in readme[config][split]:
            files += _glob(root, pattern)
    if not files:
        files = _convention_files(root, config, split)
    if not files:
        return None
    return [rec for f in files for rec in _read_file(f)]


def read_path(path: str | os.PathLike, config: str = "default", split: str = "train") -> list[dict]:
    """Records from a single file (.jsonl/.json/.parquet) or a folder in any supported layout.

    For a folder with neither a README config nor the ``<config>/<split>`` convention, every data
    file found under it (recursively, sorted) is read: this serves one-corpus folders such as a
    download of the gated WMDP bio forget corpus.
    """
    path = Path(path)
    if path.is_file():
        return _read_file(path)
    if not path.is_dir():
        raise DataError(f"{path}: no such file or folder")
    recs = _load_local(path, config, split)
    if recs is not None:
        return recs
    if (path / "state.json").is_file():  # a single save_to_disk Dataset
        import datasets

        return datasets.load_from_disk(str(path)).to_list()
    files = [p for p in sorted(path.rglob("*")) if p.is_file() and p.suffix.lower() in _DATA_SUFFIXES
             and not p.name.startswith(".") and ".cache" not in p.parts]
    parquet = [p for p in files if p.suffix.lower() == ".parquet"]
    files = parquet or files
    if not files:
        raise DataError(f"{path}: no .parquet, .jsonl or .json files found")
    return [rec for f in files for rec in _read_file(f)]


# --------------------------------------------------------------------------------------------------
# The loader the adapters share: one split, only the fields the LAYOUT keeps, at most so many records


def _project(rec: Mapping[str, Any], fields: Mapping[str, type], where: str, index: int) -> dict:
    out = {}
    for name, typ in fields.items():
        if name not in rec:
            raise DataError(f"{where}: record {index}: missing field '{name}' (have {sorted(rec)})")
        value = rec[name]
        if typ is int and isinstance(value, str) and value.strip() in ("A", "B", "C", "D"):
            value = "ABCD".index(value.strip())  # letter answers in some exports
        elif typ is list and isinstance(value, tuple):
            value = list(value)
        elif typ is int and hasattr(value, "item") and not isinstance(value, bool):
            value = value.item()  # numpy scalars
        out[name] = value
    return out


def select_fields(records: Iterable[Mapping[str, Any]], fields: Mapping[str, type], where: str,
                  limit: int | None = None) -> list[dict]:
    """Keep only ``fields`` of each record (first ``limit`` records); DataError on a missing one."""
    recs = list(itertools.islice(records, limit)) if limit is not None else list(records)
    if not recs:
        raise DataError(f"{where}: empty split (no records)")
    return [_project(r, fields, where, i) for i, r in enumerate(recs)]


def load_records(repo_id: str, config: str, splits: str | Sequence[str],
                 fields: Mapping[str, type], *, local: str | os.PathLike | None = None,
                 limit: int | None = None, key: str = "benchmarks.<name>.source",
                 local_dir: str = "DIR", set_to: str = "DIR", note: str = ""
                 ) -> tuple[list[dict], str]:
    """Load one split (the first of ``splits`` that exists) with only ``fields``; return it and
    the split name used. ``local`` is a folder holding a copy of ``repo_id``; None means the hub.
    ``local_dir``, ``set_to`` and ``note`` fill the download hint of HubUnavailable."""
    candidates = [splits] if isinstance(splits, str) else list(splits)
    for split in candidates:
        where = f"{local or repo_id} [{config}/{split}]"
        if local is not None:
            recs = _load_local(Path(local), config, split)
            if recs is None:
                continue
        else:
            try:
                recs = _load_hub(repo_id, config, split, limit, key=key, local_dir=local_dir,
                                 set_to=set_to, note=note)
            except ValueError as err:
                if isinstance(err, DataError):
                    raise
                if "split" not in str(err).lower():
                    raise DataError(f"{where}: {_one_line(err)}") from None
                continue  # unknown split on this revision: try the next name
        return select_fields(recs, fields, where, limit), split
    if local is not None:
        have = _local_splits(Path(local), config)
        raise DataError(
            f"{local}: no split {' or '.join(repr(s) for s in candidates)} of config '{config}' "
            f"(a copy of {repo_id} keeps it as {config}/{candidates[0]}-*.parquet; found splits "
            f"{have or 'none'})"
        )
    raise DataError(f"{repo_id}: config '{config}' has no split {' or '.join(map(repr, candidates))}")


def resolve_limits(kind: str, max_records: int | Mapping[str, int] | None) -> dict[str, int | None]:
    """Per-file record caps from the ``max_records`` option: None, an int for every file, or a
    mapping keyed by LAYOUT file name (``raw/forget.jsonl``; the ``.jsonl`` may be left off)."""
    files = list(LAYOUT[kind])
    if max_records is None:
        return {f: None for f in files}
    if isinstance(max_records, bool) or not isinstance(max_records, (int, Mapping)):
        raise DataError(f"max_records must be null, an integer or a mapping, not {max_records!r}")
    if isinstance(max_records, int):
        caps: dict[str, int | None] = {f: max_records for f in files}
    else:
        caps = {f: None for f in files}
        for k, v in max_records.items():
            name = k if str(k).endswith(".jsonl") else f"{k}.jsonl"
            if name not in caps:
                raise DataError(f"max_records: unknown file {k!r}; expected one of {files}")
            caps[name] = None if v is None else v
    for name, cap in caps.items():
        if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 1):
            raise DataError(f"max_records[{name!r}] must be a positive integer, not {cap!r}")
    return caps


def local_or_hub(value: Any) -> str | None:
    """Normalise a source option: None/"" /"hub" -> None (the hub), anything else -> a path."""
    if value is None:
        return None
    value = str(value).strip()
    if value in ("", "hub"):
        return None
    if value == "synthetic":
        raise DataError("source 'synthetic' is the generator's, not a hub adapter's")
    return os.path.expanduser(value)
