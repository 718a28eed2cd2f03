"""Print the installed distributions the project needs at run time (its dependencies, transitively,
extras and non-matching environment markers left out), one canonical name a line. Run it with the
interpreter of an environment where the project is installed: scripts/lock.sh cuts the runtime lock
out of the test lock with it, so that both come from one resolution."""

from __future__ import annotations

from importlib import metadata

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name


def closure(root: str) -> set[str]:
    seen: set[str] = set()
    todo = [root]
    while todo:
        name = canonicalize_name(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        for line in metadata.requires(name) or []:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return seen


if __name__ == "__main__":
    print("\n".join(sorted(closure("unlearning-optimizer-grades") - {"unlearning-optimizer-grades"})))
