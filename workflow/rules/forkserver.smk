# The fork server (src/unlearning/forkserver.py): with the local executor, one server per Snakemake run
# imports torch and transformers once and forks a worker for each job's `unlearning STAGE ...`, which
# saves 6-9 s per job on a CPU machine; a job that cannot reach it runs by itself, with the same results.
# Off switch: UNLEARNING_FORKSERVER=off (or 0, false) in Snakemake's environment starts every job as
# its own process; set to the name of a running server (forkserver.start), the run uses that one.
# Log: results/logs/forkserver.log.
import subprocess

_FORKSERVER = {}


onstart:
    from unlearning import forkserver

    wanted = not forkserver.turned_off()
    # Only where jobs would run this very interpreter on this machine: not on a cluster, and not
    # under --sdm conda/apptainer (a worker forked here would run outside the job's environment).
    plain = not workflow.deployment_settings.deployment_method
    local = wanted and plain and workflow.is_main_process and workflow.local_exec
    given = os.environ.get(forkserver.ENV, "")
    if local and given and forkserver.reachable(given):
        # A server the caller started and keeps (e.g. the test suite's, one per session: every run would
        # otherwise import torch and transformers again before its first job); this run does not stop it.
        pass
    elif local:
        import secrets

        name = f"unlearning-{os.getpid()}-{secrets.token_hex(4)}"
        _FORKSERVER["proc"] = forkserver.start(name, f"{R}/logs/forkserver.log")
        os.environ[forkserver.ENV] = name
    else:
        os.environ.pop(forkserver.ENV, None)
    # Only now (the server decided from the machine's cards that it may not serve where a GPU is
    # visible): with a workstation's card pool, jobs that claim no card see none (gpus.smk).
    hide_cards_from_cpu_jobs()


def stop_forkserver():
    proc = _FORKSERVER.pop("proc", None)
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # a loaded machine can take longer to unload torch: not a failure
            proc.kill()
            proc.wait()


onsuccess:
    stop_forkserver()


onerror:
    stop_forkserver()
