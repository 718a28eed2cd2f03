#!/usr/bin/env bash
# The GPU check (issue 23) for one lent GPU (e.g. an H200) with no network but the package registry and
# no model hub. Within GPU_CHECK_BUDGET_S (default 480 s) including setup it prints ONE JSON object
# (and writes it to OUT, default gpu-check.json):
#   setup  a CUDA torch when the python at hand has none: the driver (nvidia-smi) picks the wheel:
#          driver >= 580: torch 2.13.0 from PyPI (its Linux wheel is a CUDA 13 build, which needs 580);
#          525-579: torch 2.8.0 from PyPI (a CUDA 12.8 build; drivers from 525 run it through CUDA's
#          minor-version compatibility, 570 and later fully); older: no CUDA torch is installed and the
#          CUDA parts are recorded as skipped. GPU_CHECK_TORCH="<pip args>" overrides the choice.
#   env    card, driver, torch / CUDA / transformers / bitsandbytes versions
#   zo     at 7B (cards from 100 GiB; else ~1B): two forwards of NPO vs one ZO-SGD and one AdaZO step
#          (time, peak memory against the cost model)
#   adam   Adam with activation checkpointing at the same size: step time, achieved TFLOP/s, peak memory
#   fsdp   one torchrun + FSDP2 data-parallel unlearning run of the project (train.sharded_unlearn)
#   bf16   bf16 autocast vs fp32: Adam update at lr 1e-5, ZO projections (sphere, Gaussian, Rademacher)
#   bnb    bitsandbytes' 4-bit (and int8) codes computed on CUDA vs on the CPU
# Models are random-init Llamas from unlearning.bench.paper_scale's ARCHS (no download). Every part runs
# in its own process under `timeout`; a part that fails, runs out of time or is skipped is recorded in
# the JSON with its reason and the others still run. Without CUDA every part runs on the CPU at the
# tiny shape (tests/test_gpu_check.py), bnb is skipped.
#
#   bash scripts/gpu-check.sh [OUT.json]
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-gpu-check.json}"
budget="${GPU_CHECK_BUDGET_S:-480}"
start=$(date +%s)
left() { echo $(( budget - ($(date +%s) - start) )); }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1
py=.venv/bin/python
[ -x "$py" ] || py=python3
has_cuda() { "$1" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" >/dev/null 2>&1; }

# ---------------------------------------------------------------------------------------------- setup
driver=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -n1 | tr -d ' ')
setup="none needed"
if [ -n "$driver" ] && ! has_cuda "$py"; then
    major=${driver%%.*}
    if [ -n "${GPU_CHECK_TORCH:-}" ]; then spec=$GPU_CHECK_TORCH
    elif [ "$major" -ge 580 ] 2>/dev/null; then spec="torch==2.13.0"
    elif [ "$major" -ge 525 ] 2>/dev/null; then spec="torch==2.8.0"
    else spec=""; fi
    if [ -z "$spec" ]; then
        setup="driver $driver is older than 525: no CUDA torch wheel on PyPI runs on it; CUDA parts skipped"
    else
        venv=${GPU_CHECK_VENV:-/tmp/gpu-check-venv}
        secs=$(( $(left) / 2 ))
        echo "== setup: $spec for driver $driver into $venv (up to ${secs}s)" >&2
        # the image's packages stay visible; pins of the project's runtime for the rest (envs/unlearning.yaml)
        if { [ -x "$venv/bin/python" ] || python3 -m venv --system-site-packages "$venv"; } &&
           timeout "$secs" "$venv/bin/python" -m pip install -q --disable-pip-version-check $spec \
               "transformers==5.24.0" "safetensors==0.8.0" "bitsandbytes==0.50.2" tokenizers accelerate \
               numpy pyyaml jsonschema tqdm pandas > "$tmp/setup.log" 2>&1 && has_cuda "$venv/bin/python"; then
            py="$venv/bin/python"; setup="installed $spec for driver $driver"
        else
            setup="install of $spec failed or found no CUDA: $(tail -n 3 "$tmp/setup.log" 2>/dev/null | tr '\n"' ' \047')"
        fi
    fi
fi
setup_s=$(( $(date +%s) - start ))

# ---------------------------------------------------------------------------------------------- parts
# part NAME SECONDS CMD...: CMD under `timeout`, stdout to $tmp/NAME.out, exit status to $tmp/NAME.rc
part() {
    local name=$1 secs=$2; shift 2
    local l; l=$(left)
    if [ "$secs" -gt "$l" ]; then secs=$l; fi
    if [ "$secs" -le 5 ]; then echo "skipped: out of time" > "$tmp/$name.skip"; return; fi
    echo "== $name (up to ${secs}s)" >&2
    timeout --kill-after=10 "$secs" "$@" > "$tmp/$name.out" 2> "$tmp/$name.err"
    echo $? > "$tmp/$name.rc"
}
gc=benchmarks/investigations/gpu_check.py
if has_cuda "$py"; then
    cuda=1
    gib=$("$py" -c "import torch; print(torch.cuda.get_device_properties(0).total_memory // 2**30)")
    arch=llama-1b
    if [ "$gib" -ge 100 ]; then arch=llama2-7b; fi
    part env 30 "$py" $gc env
    part zo 110 "$py" $gc zo --arch "$arch"
    part adam 120 "$py" $gc adam --arch "$arch"
    if [ "$(cat "$tmp/adam.rc" 2>/dev/null)" != 0 ] && [ "$arch" != llama-1b ]; then
        part adam_1b 60 "$py" $gc adam --arch llama-1b   # the 7B step failed (e.g. out of memory)
    fi
    part fsdp 60 "$py" -m torch.distributed.run --standalone --nproc-per-node 1 $gc fsdp --arch llama-1b --seq 64
    part bf16 60 "$py" $gc bf16 --arch llama-300m
    part bnb 30 "$py" $gc bnb
else
    cuda=0; arch=tiny
    part env 120 "$py" $gc env
    part zo 90 "$py" $gc zo --arch tiny
    part adam 90 "$py" $gc adam --arch tiny
    part fsdp 120 "$py" -m torch.distributed.run --standalone --nproc-per-node 2 $gc fsdp --arch tiny --seq 16
    part bf16 90 "$py" $gc bf16 --arch tiny --directions 4
    echo "skipped: no CUDA" > "$tmp/bnb.skip"
fi

"$py" - "$tmp" "$out" "$cuda" "$arch" "$(( $(date +%s) - start ))" "$setup" "$setup_s" "${driver:-}" <<'PY'
import json, pathlib, platform, sys, time
tmp, out, cuda, arch, wall, setup, setup_s, driver = sys.argv[1:9]
tmp = pathlib.Path(tmp)
res = {"check": "scripts/gpu-check.sh", "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "host": platform.node(),
       "cuda": cuda == "1", "driver": driver or None, "arch": arch, "wall_s": int(wall),
       "setup": {"status": setup, "s": int(setup_s)}, "parts": {}}
for name in ("env", "zo", "adam", "adam_1b", "fsdp", "bf16", "bnb"):
    skip, rc_file = tmp / f"{name}.skip", tmp / f"{name}.rc"
    if skip.exists():
        res["parts"][name] = {"status": skip.read_text().strip()}
        continue
    if not rc_file.exists():
        continue
    rc = int(rc_file.read_text())
    lines = [x for x in (tmp / f"{name}.out").read_text().splitlines() if x.startswith("{")]
    part = {"status": "ok" if rc == 0 else ("timeout" if rc in (124, 137) else f"failed (exit {rc})")}
    if lines:
        try:
            part["results"] = json.loads(lines[-1])
        except ValueError:
            pass
    if rc != 0:
        err = (tmp / f"{name}.err").read_text()
        part["stderr_tail"] = err[-1500:]
        part["oom"] = "out of memory" in err.lower()
    if part.get("results", {}).get("status", "").startswith("skipped"):
        part["status"] = part["results"].pop("status")
    res["parts"][name] = part
text = json.dumps(res, indent=1)
pathlib.Path(out).write_text(text + "\n")
print(text)
PY
