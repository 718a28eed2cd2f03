"""The `unlearning` command's side of the fork server (forkserver.py): hand a stage to a running
server, or say that none answers so that the command runs the stage itself. Also the two sides'
shared protocol: the socket address, and messages framed as a 4-byte length and JSON.

The command (cli.run) imports only this module; the server imports it and cli (whose ``main`` its
workers run), so neither of the command and the server imports the other.
"""

from __future__ import annotations

import json
import os
import select
import socket
import sys
from typing import Sequence

ENV = "UNLEARNING_FORKSERVER"
MAX_MSG = 1 << 20


def send(conn: socket.socket, obj: dict) -> None:
    """Send ``obj`` as one message."""
    data = json.dumps(obj).encode()
    conn.sendall(len(data).to_bytes(4, "big") + data)


def recv(conn: socket.socket) -> dict | None:
    """The next message, or None when the other side closed the connection."""
    head = recv_exact(conn, 4)
    if head is None:
        return None
    size = int.from_bytes(head, "big")
    if size > MAX_MSG:
        raise ValueError(f"fork server message of {size} bytes")
    body = recv_exact(conn, size)
    return None if body is None else json.loads(body)


def recv_exact(conn: socket.socket, n: int) -> bytes | None:
    """Exactly ``n`` bytes, or None when the other side closed the connection first."""
    buf = b""
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def turned_off() -> bool:
    """Whether the user turned the server off (``UNLEARNING_FORKSERVER=off``, ``0`` or ``false``)."""
    return os.environ.get(ENV, "") in ("off", "0", "false")


def address(name: str) -> str:
    """The socket address of the server called ``name``."""
    # Abstract namespace: no file to clean up, and invisible from other hosts, so a job that lands
    # elsewhere (or after the server is gone) simply runs by itself.
    return "\0" + name


def reachable(name: str) -> bool:
    """Whether a server called ``name`` listens on this machine (a connection that sends nothing: the
    server's handler for it returns at once)."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(address(name))
        return True
    except OSError:
        return False
    finally:
        conn.close()


def delegate(name: str, argv: Sequence[str], timeout: float = 120.0) -> int | None:
    """Run ``unlearning argv`` in a worker forked by the server ``name``.

    Returns the worker's exit status (128 + signal number if it was killed), or None when no server
    answers, in which case the caller runs the stage itself.
    """
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(address(name))
    except OSError:
        conn.close()
        return None
    try:
        request = {"argv": list(argv), "cwd": os.getcwd(), "env": dict(os.environ)}
        data = json.dumps(request).encode()
        # Standard streams travel as file descriptors: the worker writes straight into the job's log.
        socket.send_fds(conn, [len(data).to_bytes(4, "big") + data], [0, 1, 2])
        # The server may still be importing (it listens first): wait for its acknowledgement.
        ready, _, _ = select.select([conn], [], [], timeout)
        if not ready:
            return None
        ack = recv(conn)
        if ack is None or ack.get("status") != "ready":
            return None
        # Commit: only now does the handler fork the worker. A client that gave up above closed the
        # connection instead, so a stage can never run both here and in a worker.
        send(conn, {"go": True})
        reply = recv(conn)  # blocks until the worker ends; if we are killed, the handler kills it
    except (OSError, ValueError):
        return None
    finally:
        conn.close()
    if reply is None:
        print("forkserver: lost the server before the job ended", file=sys.stderr)
        return 1
    print(f"forkserver: worker {reply['pid']} exit {reply['code']}, peak RSS {reply['maxrss_mb']:.0f} MB, "
          f"CPU {reply['cpu_s']:.1f} s", file=sys.stderr)
    return int(reply["code"])
