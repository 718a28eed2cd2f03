"""A fork server that pays for importing torch and transformers once per Snakemake run, not per job.

On this project's CPU machines a job's own work is often shorter than starting Python and importing
torch, transformers, bitsandbytes and rouge-score (about 6-9 s). With the local executor the
Snakefile starts one server (`onstart` in workflow/rules/forkserver.smk), which imports those
libraries and then waits on a machine-local (abstract Unix) socket. A job still runs
``unlearning STAGE ...`` (or ``python -m unlearning STAGE ...``); when the variable
``UNLEARNING_FORKSERVER`` names a reachable server, that command hands its arguments, working
directory, environment and standard streams to the server, which forks a worker that runs the stage
exactly as the command would have, and the command exits with the worker's exit status. If the server
is unreachable the command runs the stage itself, so the server changes speed, never results.

One process per connection (the *handler*) answers "ready", forks the worker once the command
commits ("go"), waits for it and reports its exit status and peak memory; if the command goes away
(Snakemake killed the job), the handler kills the worker.
The server exits when Snakemake exits (it polls the parent's pid) or on SIGTERM. It is never used on a
cluster (each job runs on its node), under ``--sdm conda`` (jobs run another interpreter), or where a
GPU is visible (CUDA must not be touched before a fork).
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import traceback
from typing import Sequence

from . import cli
from .forkclient import ENV, MAX_MSG, delegate, reachable, turned_off  # noqa: F401 - the server's API too
from .forkclient import address as _address
from .forkclient import recv as _recv
from .forkclient import recv_exact as _recv_exact
from .forkclient import send as _send

# Libraries a stage may import; loaded once in the server so that forked workers share them.
PRELOAD = (
    "torch", "transformers", "transformers.models.llama.modeling_llama", "tokenizers", "safetensors.torch",
    "bitsandbytes", "rouge_score.rouge_scorer", "sklearn.metrics", "pandas", "matplotlib.pyplot",
)


# --------------------------------------------------------------------------------------------------
# Server side.


def _gpu_visible() -> bool:
    # NVML-based check: tells whether CUDA devices exist without initialising CUDA in this process.
    os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
    import torch

    return torch.cuda.is_available()


def _preload(modules: Sequence[str]) -> None:
    import importlib

    os.environ.setdefault("MPLBACKEND", "Agg")
    for mod in modules:
        try:
            importlib.import_module(mod)
        except ImportError as err:  # optional extras: the worker imports them itself if needed
            print(f"forkserver: not preloaded {mod}: {err}", file=sys.stderr)


def _run_worker(request: dict, fds: list[int]) -> None:
    """In the forked worker: become the job's process and run the stage; never returns."""
    code = 1
    try:
        for target, fd in zip((0, 1, 2), fds):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        os.environ.pop(ENV, None)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        # A fresh interpreter would seed these from the OS; forked ones would all share the server's.
        import random

        random.seed()
        if "numpy" in sys.modules:
            sys.modules["numpy"].random.seed()
        sys.argv = ["unlearning", *request["argv"]]
        code = cli.main(request["argv"])
    except SystemExit as exc:  # argparse
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # noqa: BLE001 - the job's traceback belongs in its log, as without the server
        traceback.print_exc()
        code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _handle(conn: socket.socket) -> None:
    """In the handler process: fork the worker, relay its exit status, kill it if the client leaves."""
    msg, fds, _, _ = socket.recv_fds(conn, MAX_MSG + 4, 3)
    if len(msg) < 4 or len(fds) != 3:
        return
    size = int.from_bytes(msg[:4], "big")
    rest = _recv_exact(conn, size - len(msg[4:]))
    if rest is None:
        return
    request = json.loads(msg[4:] + rest)
    _send(conn, {"status": "ready"})
    go = _recv(conn)
    if not go or not go.get("go"):  # the client gave up waiting and runs the stage itself
        for fd in fds:
            os.close(fd)
        return
    pid = os.fork()
    if pid == 0:
        conn.close()
        _run_worker(request, fds)
    for fd in fds:
        os.close(fd)
    while True:
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            break
        readable, _, _ = select.select([conn], [], [], 0.1)
        if readable and not conn.recv(1):  # the job's command is gone: stop its worker
            os.kill(pid, signal.SIGKILL)
            os.wait4(pid, 0)
            return
    code = os.waitstatus_to_exitcode(status)
    _send(conn, {"pid": pid, "code": code if code >= 0 else 128 - code,
                 "maxrss_mb": usage.ru_maxrss / 1024, "cpu_s": usage.ru_utime + usage.ru_stime})


def serve(name: str, parent: int | None = None, preload: Sequence[str] = PRELOAD,
          ready_fd: int | None = None) -> int:
    """Listen on ``name``, preload ``preload`` and fork a handler per job until ``parent`` exits.

    ``ready_fd``: a pipe's write end; one byte is written there once the socket listens (see start()).
    """
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(_address(name))
    server.listen(64)  # listen before importing: early jobs queue instead of starting alone
    if ready_fd is not None:
        os.write(ready_fd, b"1")
        os.close(ready_fd)
    if _gpu_visible():
        # Queued jobs see the connection close and run by themselves.
        print("forkserver: a GPU is visible; jobs start their own processes", file=sys.stderr)
        server.close()
        return 0
    _preload(preload)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # handlers are reaped by the kernel
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"forkserver: ready ({len(preload)} libraries preloaded)", file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        while parent is None or _alive(parent):
            ready, _, _ = select.select([server], [], [], 1.0)
            if not ready:
                continue
            conn, _ = server.accept()
            if not _same_user(conn):  # an abstract socket has no file permissions to rely on
                conn.close()
                continue
            if os.fork() == 0:
                server.close()
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the handler waits for its worker
                try:
                    _handle(conn)
                finally:
                    os._exit(0)
            conn.close()
    finally:
        server.close()
    return 0


def _same_user(conn: socket.socket) -> bool:
    _, uid, _ = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
    return uid == os.getuid()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def start(name: str, log_path: str, wait_s: float = 60.0) -> subprocess.Popen:
    """Start a server for the calling process (Snakemake) in the background; returns the process.

    It runs this interpreter and imports the package installed there, as the jobs' ``unlearning``
    command does (workflow/rules/common.smk puts that command first on PATH). Returns once the
    server's socket listens (at most ``wait_s``): otherwise the first jobs of a run, started at the
    same moment on a loaded machine, could find no socket yet and run by themselves.
    """
    env = dict(os.environ)
    env.pop(ENV, None)
    os.makedirs(os.path.dirname(log_path) or ".", exist_ok=True)
    read_end, write_end = os.pipe()
    try:
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "unlearning.forkserver", name, "--parent", str(os.getpid()),
                 "--ready-fd", str(write_end)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env, start_new_session=True,
                pass_fds=(write_end,),
            )
    finally:
        os.close(write_end)  # the server holds its own copy
    # A byte: listening. End of file (the server died) or no answer in time: jobs run by themselves.
    with os.fdopen(read_end, "rb", buffering=0) as ready:
        if select.select([ready], [], [], wait_s)[0]:
            ready.read(1)
    return proc


if __name__ == "__main__":
    import argparse

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("name", help="abstract socket name")
    p.add_argument("--parent", type=int, default=None, help="exit when this process exits")
    p.add_argument("--ready-fd", type=int, default=None, help="write one byte here once listening")
    a = p.parse_args()
    sys.exit(serve(a.name, a.parent, ready_fd=a.ready_fd))
