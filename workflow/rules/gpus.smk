# GPUs of a workstation (profiles/workstation): the machine's cards are a Snakemake resource
# (`--resources gpu=N`), each GPU rule's `gpu` resource says how many a job needs, and a GPU job's
# command starts with src/unlearning/gpu_pool.py, which locks that many free cards of the pool and sets
# CUDA_VISIBLE_DEVICES to them (Snakemake counts cards but never assigns ids: snakemake#281).
# Without a `gpu` resource for the machine (profiles/local, profiles/slurm) nothing here changes a job.
import shlex

from unlearning import gpu_pool

# A cluster job's own Snakemake (remote mode) gets the job's resources as `--resources`: not a machine.
_MACHINE_GPUS = None if workflow.remote_exec else workflow.global_resources.get("gpu")
MACHINE_GPUS = None if _MACHINE_GPUS is None else _MACHINE_GPUS.value
GPU_POOL = []  # the card ids local GPU jobs claim
GPU_LOCKS = gpu_pool.default_lock_dir()


def gpu_requests():
    """rule -> (GPUs per job, where that is set), for the rules with a `gpu` resource (first attempt)."""
    found = {}
    overwritten = workflow.resource_settings.overwrite_resources or {}
    for r in workflow.rules:
        res = r.resources.get("gpu")
        if res is None:
            continue
        try:
            n = int(eval(res.raw, {"attempt": 1}) if res.is_evaluable() else res.value)
        except Exception:  # an expression of more than the attempt: Snakemake checks it per job
            continue
        where = f"set-resources: {r.name}: gpu" if "gpu" in overwritten.get(r.name, {}) else f"rule {r.name} resources"
        found[r.name] = (n, where)
    return found


if MACHINE_GPUS is not None:
    try:
        GPU_POOL = gpu_pool.pool_of(int(MACHINE_GPUS), os.environ.get(gpu_pool.VISIBLE))
    except gpu_pool.PoolError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)


def check_machine_gpus():
    """Stop before any job, in one line, when a rule asks for more GPUs per job than the machine has
    (Snakemake would silently cut the request to the machine's count, and a sharded run would start with
    fewer ranks than its profile says). Called once every rule is defined (end of the Snakefile)."""
    if MACHINE_GPUS is None:
        return
    too_many = gpu_pool.over_ask(gpu_requests(), int(MACHINE_GPUS))
    if too_many:
        print(f"error: {too_many}", file=sys.stderr)
        sys.exit(1)


def gpu_claim(resources):
    """The command prefix that gives a local GPU job its own cards ("" for CPU jobs, and without a
    pool: on a cluster the scheduler assigns the cards)."""
    n = int(resources.get("gpu", 0) or 0)
    if not GPU_POOL or n <= 0 or workflow.remote_exec or not workflow.local_exec:
        return ""
    pool = ",".join(GPU_POOL)
    return f"python -m unlearning.gpu_pool --cards {n} --pool {shlex.quote(pool)} --locks {shlex.quote(GPU_LOCKS)} -- "


def gpu_launcher(wildcards, resources):
    """`unlearning` after claiming the job's cards: how a one-process GPU job starts its stage."""
    return gpu_claim(resources) + "unlearning"


def hide_cards_from_cpu_jobs():
    """With a pool, jobs that claim no card see none (as on a cluster): CUDA_VISIBLE_DEVICES is empty
    in Snakemake's environment, which jobs inherit; gpu_pool sets it for the GPU jobs. Called in
    onstart after the fork server started, which decides from the machine's cards whether it serves."""
    if GPU_POOL and workflow.is_main_process and workflow.local_exec and not workflow.remote_exec:
        os.environ[gpu_pool.VISIBLE] = ""
