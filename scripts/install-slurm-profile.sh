#!/usr/bin/env bash
# Install the project's SLURM profile where Snakemake looks for `--profile slurm`
# (${XDG_CONFIG_HOME:-~/.config}/snakemake/slurm/config.yaml), filled in with your account and partition.
# One-time step; run it again to change them (the previous file is kept as config.yaml.bak).
#
#   bash scripts/install-slurm-profile.sh ACCOUNT PARTITION [GPU_MODEL] [--gpu-partition NAME]
#                                         [--unlearn-gpus N] [--gpu-models M1,M2,..]
#                                         [--gpu-constraints C1,C2,..] [--cpus-per-gpu N]
#                                         [--distance-threads N] [--dest DIR]
#
#   ACCOUNT        SLURM account to charge (sbatch -A); see `sacctmgr show assoc user=$USER`
#   PARTITION      partition for every job (sbatch -p); see `sinfo -s`
#   GPU_MODEL      optional GPU type for the GPU rules (those with `gpu: 1` in the profile),
#                  as your cluster names it in --gpus=MODEL:1 (e.g. a100, h100)
#   --gpu-partition NAME   a separate partition for the GPU rules (many clusters have one)
#   --unlearn-gpus N       GPUs per unlearning and relearning job (default 1); N > 1 shards each run
#                  over N GPUs (torchrun + FSDP2) and asks for 30000 * N MB of host memory (docs/guides/clusters.md)
#   --cpus-per-gpu N       CPUs per GPU for a sharded (torchrun) unlearning or relearning job
#                  (default 4: each rank's process, its data and NCCL threads; sbatch --cpus-per-task=N*GPUs)
#   --distance-threads N   threads of the grade-distance job (default 9: the most groups of a paper
#                  config, WMDP's 3 methods x 3 seeds, each streamed in its own thread; ~2.5 GB each at 7B)
#   --gpu-models M1,M2,..  GPU type per attempt (instead of GPU_MODEL): a GPU job's first try asks
#                  for M1, its retry after a failure (e.g. out of GPU memory) for M2, and so on; later
#                  tries keep the last (e.g. a100,h100)
#   --gpu-constraints C1,C2,..  node feature per attempt for the GPU rules (sbatch -C), the same way
#                  (e.g. a100_40g,a100_80g where cards are told apart by features, not GPU types)
#   --dest DIR     install into DIR instead (DIR/config.yaml)
#
# Then, from the repository root:   snakemake --profile slurm [--configfile configs/...]
# The source is profiles/slurm/config.yaml minus its test-cluster block (real clusters have accounting,
# so the plugin checks job status with sacct).
set -euo pipefail
usage() { sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
die() { echo "install-slurm-profile.sh: error: $*" >&2; exit 1; }

pos=(); gpu_partition=""; dest=""; unlearn_gpus=1; gpu_models=""; gpu_constraints=""; cpus_per_gpu=4
distance_threads=9
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage ;;
    --gpu-partition) [ $# -ge 2 ] || die "--gpu-partition needs a value"; gpu_partition=$2; shift 2 ;;
    --gpu-partition=*) gpu_partition=${1#*=}; shift ;;
    --unlearn-gpus) [ $# -ge 2 ] || die "--unlearn-gpus needs a value"; unlearn_gpus=$2; shift 2 ;;
    --unlearn-gpus=*) unlearn_gpus=${1#*=}; shift ;;
    --cpus-per-gpu) [ $# -ge 2 ] || die "--cpus-per-gpu needs a value"; cpus_per_gpu=$2; shift 2 ;;
    --cpus-per-gpu=*) cpus_per_gpu=${1#*=}; shift ;;
    --distance-threads) [ $# -ge 2 ] || die "--distance-threads needs a value"; distance_threads=$2; shift 2 ;;
    --distance-threads=*) distance_threads=${1#*=}; shift ;;
    --gpu-models) [ $# -ge 2 ] || die "--gpu-models needs a value"; gpu_models=$2; shift 2 ;;
    --gpu-models=*) gpu_models=${1#*=}; shift ;;
    --gpu-constraints) [ $# -ge 2 ] || die "--gpu-constraints needs a value"; gpu_constraints=$2; shift 2 ;;
    --gpu-constraints=*) gpu_constraints=${1#*=}; shift ;;
    --dest) [ $# -ge 2 ] || die "--dest needs a value"; dest=$2; shift 2 ;;
    --dest=*) dest=${1#*=}; shift ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) pos+=("$1"); shift ;;
  esac
done
[ ${#pos[@]} -ge 2 ] && [ ${#pos[@]} -le 3 ] || { echo "install-slurm-profile.sh: expected ACCOUNT PARTITION [GPU_MODEL]" >&2; usage; }
account=${pos[0]}; partition=${pos[1]}; gpu_model=${pos[2]:-}
name_re='^[A-Za-z0-9][A-Za-z0-9_.-]*$'
[[ $account =~ $name_re ]] || die "account '$account': letters, digits, _ . - only"
[[ $partition =~ $name_re ]] || die "partition '$partition': letters, digits, _ . - only"
[ -z "$gpu_model" ] || [[ $gpu_model =~ $name_re ]] || die "GPU model '$gpu_model': letters, digits, _ . - only"
[ -z "$gpu_partition" ] || [[ $gpu_partition =~ $name_re ]] || die "GPU partition '$gpu_partition': letters, digits, _ . - only"
[[ $unlearn_gpus =~ ^[1-9][0-9]*$ ]] || die "--unlearn-gpus '$unlearn_gpus': a positive integer"
[[ $cpus_per_gpu =~ ^[1-9][0-9]*$ ]] || die "--cpus-per-gpu '$cpus_per_gpu': a positive integer"
[[ $distance_threads =~ ^[1-9][0-9]*$ ]] || die "--distance-threads '$distance_threads': a positive integer"
[ -z "$gpu_models" ] || [ -z "$gpu_model" ] || die "give GPU_MODEL or --gpu-models, not both"

# A comma list as a Snakemake resource expression of `attempt`: the attempt-th item, the last one after.
per_attempt() {  # OPTION LIST
  local items=() item quoted=""
  [[ $2 =~ ^[^,]+(,[^,]+)*$ ]] || die "$1 '$2': a comma-separated list without empty items"
  IFS=, read -r -a items <<<"$2"
  for item in "${items[@]}"; do
    [[ $item =~ $name_re ]] || die "$1 '$2': letters, digits, _ . - only, separated by commas"
    quoted+="${quoted:+, }'$item'"
  done
  echo "[$quoted][min(attempt, ${#items[@]}) - 1]"
}
models_expr=""; constraints_expr=""
[ -z "$gpu_models" ] || models_expr=$(per_attempt --gpu-models "$gpu_models")
[ -z "$gpu_constraints" ] || constraints_expr=$(per_attempt --gpu-constraints "$gpu_constraints")

repo="$(cd "$(dirname "$0")/.." && pwd)"
src="$repo/profiles/slurm/config.yaml"
[ -f "$src" ] || die "profile source $src not found"
grep -q '^default-resources:$' "$src" || die "$src has no 'default-resources:' line to extend"
dest=${dest:-${XDG_CONFIG_HOME:-$HOME/.config}/snakemake/slurm}

tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
{
  echo "# Installed by scripts/install-slurm-profile.sh from profiles/slurm/config.yaml in $repo."
  echo "# Account '$account', partition '$partition'${gpu_model:+, GPU model '$gpu_model'}${gpu_partition:+, GPU partition '$gpu_partition'}."
  echo "# Re-run that script to change them; edit resources here or in the repository's profile."
  awk -v acc="$account" -v part="$partition" -v model="$gpu_model" -v gpart="$gpu_partition" \
      -v ugpus="$unlearn_gpus" -v models="$models_expr" -v constraints="$constraints_expr" \
      -v cpg="$cpus_per_gpu" '
    /^# --- test cluster only/ { skip = 1; next }
    /^  [a-z_]+:([ \t]|$)/ { rule = $1 }   # a rule of set-resources (its line may carry a comment)
    (rule == "unlearn:" || rule == "relearn:") && ugpus > 1 && /^    mem_mb:/ { print "    mem_mb: \"" 30000 * ugpus " * attempt\""; next }
    /^# --- end test cluster only/ { skip = 0; next }
    skip { next }
    /^default-resources:$/ {
      print
      print "  slurm_account: \"" acc "\""
      print "  slurm_partition: \"" part "\""
      next
    }
    /^    gpu: 1/ {
      if ((rule == "unlearn:" || rule == "relearn:") && ugpus > 1) {
        print "    gpu: " ugpus
        print "    cpus_per_task: " cpg * ugpus   # torchrun: one process per rank (the rule says threads: 1)
      } else print
      if (model != "") print "    gpu_model: \"" model "\""
      if (models != "") print "    gpu_model: \"" models "\""
      if (constraints != "") print "    constraint: \"" constraints "\""
      if (gpart != "") print "    slurm_partition: \"" gpart "\""
      next
    }
    { print }
  ' "$src"
  # set-threads: real clusters only (the test cluster of scripts/slurm/start.sh may have fewer CPUs)
  echo ""
  echo "set-threads:"
  echo "  report_grade_distance: $distance_threads  # one benchmark/method/seed group per thread (stages/distance.py)"
} >"$tmp"
grep -q "slurm_account: \"$account\"" "$tmp" || die "could not insert the account into the profile"
grep -q '^slurm-status-command:' "$tmp" && die "test-cluster block markers missing in $src"

mkdir -p "$dest"
if [ -f "$dest/config.yaml" ] && ! cmp -s "$tmp" "$dest/config.yaml"; then
  cp "$dest/config.yaml" "$dest/config.yaml.bak"
  echo "install-slurm-profile.sh: previous profile kept as $dest/config.yaml.bak"
fi
cp "$tmp" "$dest/config.yaml"
echo "install-slurm-profile.sh: installed $dest/config.yaml (account '$account', partition '$partition'${gpu_model:+, GPU model '$gpu_model'}${gpu_partition:+, GPU partition '$gpu_partition'})"
echo "install-slurm-profile.sh: now run from the repository root:  snakemake --profile slurm"
