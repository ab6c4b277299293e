"""The supervisor: the first process inside the sandbox, and the only trusted one there.

``python -m rtsr.submissions.supervisor CONFIG -- ARGV...`` (started by
:mod:`rtsr.submissions.sandbox`, never by hand) becomes a child subreaper, starts ``ARGV``
with the sandbox's resource limits (and, on a root host, as an unprivileged user), waits for
it at most the wall-clock limit, then kills every process the payload left behind, including
those that called ``setsid`` or double-forked: as a subreaper it inherits them all. It writes
one JSON line about the run to a file descriptor only it holds, and exits.

Standard library only: it starts before every check, so it must start fast.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any

_PR_SET_CHILD_SUBREAPER = 36


def _become_subreaper() -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _children(parent: int) -> list[tuple[int, bool]]:
    """``(pid, is_zombie)`` of each process whose parent is ``parent``, read from /proc (no
    library call lists them)."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # the command name may hold spaces and parentheses: the fields follow the last ')'
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 1 and int(fields[1]) == parent:
            found.append((int(name), fields[0] == b"Z"))
    return found


def _alive(pid: int) -> bool:
    """Whether ``pid`` still runs (not gone, not a zombie)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3] not in (b"Z", b"X")


def _descendants(root: int) -> list[int]:
    """Every live process below ``root`` (children, their children...), zombies aside."""
    found, frontier = [], [root]
    while frontier:
        below = [(pid, zombie) for parent in frontier for pid, zombie in _children(parent)]
        found += [pid for pid, zombie in below if not zombie]
        frontier = [pid for pid, _ in below]
    return found


def _kill_strays(payload: int) -> int:
    """SIGKILL every process of the sandbox but the payload itself: what it started (its
    children, and as the subreaper, every orphan, ``setsid`` or not); return how many."""
    strays = [pid for pid in _descendants(os.getpid()) if pid != payload]
    for pid in strays:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    # a signal is delivered, not obeyed at once: wait (briefly) until each is dead
    deadline = time.monotonic() + 2.0
    while any(_alive(pid) for pid in strays) and time.monotonic() < deadline:
        time.sleep(0.005)
    # reap the orphans now among our children, so that none lingers as a zombie
    for pid, zombie in _children(os.getpid()):
        if pid != payload and zombie:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
    return len(strays)


def _serve_control(fd: int, payload: int) -> None:
    """On each ``k`` from the parent (a request of a long-lived payload answered), kill the
    processes the payload left (:func:`_kill_strays`) and answer how many, as a line."""
    with socket.socket(fileno=fd) as control:
        while control.recv(1) == b"k":
            control.sendall(f"{_kill_strays(payload)}\n".encode())


def _kill_the_rest() -> int:
    """SIGKILL every remaining descendant and reap it; return how many were still running
    (zombies, already dead, are reaped but not counted)."""
    me, killed = os.getpid(), set()
    while True:
        for pid, zombie in _children(me):
            if not zombie:
                killed.add(pid)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return len(killed)


def _limit_and_drop(config: dict[str, Any]) -> None:
    """In the payload, before exec: resource limits, then the unprivileged user."""
    for name, value in config["rlimits"].items():
        soft, hard = value if isinstance(value, list) else (value, value)
        resource.setrlimit(getattr(resource, name), (soft, hard))
    uid = config.get("uid")
    if uid is not None:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)


def main(argv: list[str]) -> int:
    config = json.loads(argv[0])
    payload = argv[argv.index("--") + 1 :]
    status = os.fdopen(config["status_fd"], "w")
    subreaper = _become_subreaper()
    with open(config["stdout"], "wb") as out, open(config["stderr"], "wb") as err:
        if config.get("uid") is not None:
            os.fchown(out.fileno(), config["uid"], config["uid"])
            os.fchown(err.fileno(), config["uid"], config["uid"])
        started = time.monotonic()
        try:
            child = subprocess.Popen(
                payload,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                pass_fds=tuple(config.get("pass_fds", ())),
                preexec_fn=lambda: _limit_and_drop(config),
            )
        except (OSError, subprocess.SubprocessError) as e:  # the latter: a limit or the user refused
            why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            status.write(json.dumps({"error": f"cannot start {payload[0]}: {why}"}) + "\n")
            return 1
    # asked to stop (the app closing its models): end the payload, then clean up as usual
    signal.signal(signal.SIGTERM, lambda *_: child.kill())
    for fd in config.get("pass_fds", ()):
        os.close(fd)  # only the payload holds the channel: its end closes when the payload ends
    if config.get("control_fd") is not None:
        threading.Thread(target=_serve_control, args=(config["control_fd"], child.pid), daemon=True).start()
    wall = config.get("wall_seconds")
    timed_out = False
    try:
        returncode = child.wait(timeout=wall)
    except subprocess.TimeoutExpired:
        timed_out = True
        child.kill()
        returncode = child.wait()
    elapsed = time.monotonic() - started
    leftover = _kill_the_rest()
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    report = {
        "returncode": returncode,
        "timed_out": timed_out,
        "elapsed_s": elapsed,
        "leftover": leftover,
        "subreaper": subreaper,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "max_rss_bytes": usage.ru_maxrss * 1024,
    }
    status.write(json.dumps(report) + "\n")
    status.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
