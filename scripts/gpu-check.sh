#!/usr/bin/env bash
# One GPU check (issue 16): on a machine with CUDA and no network, in at most 8 minutes, run
#   1. the GPU tests (tests/test_gpu.py, marker gpu),
#   2. benchmarks/paper_scale.py at the largest named shape that fits the card (llama2-7b from 100 GB,
#      else llama-1b), NPO at the lab's batch 4 x 2048 with gradient checkpointing, every optimizer,
#   3. bitsandbytes' CUDA 8-bit and 4-bit loading (benchmarks/bnb_loading.py),
# and write ONE JSON file of results (default gpu-check.json). Without CUDA it runs the CPU-safe parts
# (paper_scale at the tiny shape, the modelled fit table) and records the CUDA parts as skipped.
#
#   bash scripts/gpu-check.sh [OUT.json]          (budget: GPU_CHECK_BUDGET_S, default 480 s)
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-gpu-check.json}"
budget="${GPU_CHECK_BUDGET_S:-480}"
py=.venv/bin/python
[ -x "$py" ] || py=python3
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
start=$(date +%s)
left() { echo $(( budget - ($(date +%s) - start) )); }

# part NAME SECONDS CMD...: run CMD under `timeout`, stdout to $tmp/NAME.out, status to $tmp/NAME.rc
part() {
    local name=$1 secs=$2; shift 2
    local l; l=$(left)
    if [ "$secs" -gt "$l" ]; then secs=$l; fi
    if [ "$secs" -le 5 ]; then echo "skipped: out of time" > "$tmp/$name.skip"; return; fi
    echo "== $name (up to ${secs}s)" >&2
    timeout --kill-after=10 "$secs" "$@" > "$tmp/$name.out" 2> "$tmp/$name.err"
    echo $? > "$tmp/$name.rc"
}

cuda=$("$py" -c "import torch; print(int(torch.cuda.is_available()))" 2>/dev/null || echo 0)
if [ "$cuda" = 1 ]; then
    gib=$("$py" -c "import torch; print(torch.cuda.get_device_properties(0).total_memory // 2**30)")
    arch=llama-1b
    if [ "$gib" -ge 100 ]; then arch=llama2-7b; fi
    part gpu_tests 150 "$py" -m pytest -m gpu -q -p no:cacheprovider tests/test_gpu.py tests/test_zo_bf16.py
    part paper_scale 240 "$py" benchmarks/paper_scale.py --arch "$arch" --steps 3 --out "$tmp/paper_scale.json"
    part bnb_loading 60 "$py" benchmarks/bnb_loading.py --arch llama-1b
else
    arch=tiny
    for p in gpu_tests bnb_loading; do echo "skipped: no CUDA" > "$tmp/$p.skip"; done
    part paper_scale 120 "$py" benchmarks/paper_scale.py --arch tiny --optimizers adam,zo_sgd --steps 2 \
        --out "$tmp/paper_scale.json"
fi
part fit_table 30 "$py" benchmarks/paper_scale.py --arch llama2-7b --fit-table

"$py" - "$tmp" "$out" "$cuda" "$arch" "$(( $(date +%s) - start ))" <<'PY'
import json, pathlib, platform, sys, time
tmp, out, cuda, arch, wall = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3] == "1", sys.argv[4], int(sys.argv[5])
res = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "host": platform.node(), "cuda": cuda, "arch": arch,
       "wall_s": wall, "parts": {}}
try:
    import torch
    res["torch"] = torch.__version__
    if cuda:
        res["card"] = torch.cuda.get_device_name(0)
        res["card_bytes"] = torch.cuda.get_device_properties(0).total_memory
except Exception as err:  # noqa: BLE001
    res["torch_error"] = str(err)
for name in ("gpu_tests", "paper_scale", "bnb_loading", "fit_table"):
    skip = tmp / f"{name}.skip"
    if skip.exists():
        res["parts"][name] = {"status": skip.read_text().strip()}
        continue
    rc = int((tmp / f"{name}.rc").read_text())
    text = (tmp / f"{name}.out").read_text()
    part = {"status": "ok" if rc == 0 else ("timeout" if rc in (124, 137) else f"failed (exit {rc})")}
    if rc != 0:
        part["stderr_tail"] = (tmp / f"{name}.err").read_text()[-1500:]
    if name == "paper_scale" and (tmp / "paper_scale.json").exists():
        part["results"] = json.loads((tmp / "paper_scale.json").read_text())["results"]
    elif name == "paper_scale":  # timed out: keep the optimizers that finished
        part["results"] = [json.loads(x) for x in text.splitlines() if x.startswith("{")]
    elif name == "bnb_loading":
        part["results"] = [json.loads(x) for x in text.splitlines() if x.startswith("{")]
    elif name == "fit_table":
        part["results"] = json.loads(text) if rc == 0 else None
    else:
        part["summary"] = (text.strip().splitlines() or [""])[-1]
    res["parts"][name] = part
pathlib.Path(out).write_text(json.dumps(res, indent=1))
print(f"gpu-check: wrote {out} ({'CUDA' if cuda else 'no CUDA: CPU-safe parts only'}, {wall} s)")
PY
