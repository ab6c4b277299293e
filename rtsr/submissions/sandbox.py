"""The sandbox every piece of submission code runs in: validation, the app's models, and the
evaluation worker.

One call, :func:`run` (or :func:`start` for a long-lived process with a channel), puts a
command in a sandbox made of tools built for it:

- **bubblewrap** (``bwrap``, Debian package ``bubblewrap``), where the host allows it: new
  PID, network, IPC and UTS namespaces (no network at all; nothing outside is visible), a
  root filesystem that holds only the system's libraries, the Python installation, the rtsr
  package, the GPU's device files, the submission's folder and the inputs, all read-only,
  plus one writable scratch folder; ``--die-with-parent``; a user namespace, or on a root
  host an unprivileged user of its own (:data:`SANDBOX_UIDS`) for the payload.
- **Resource limits** (``setrlimit``) on the payload and everything it starts: memory,
  CPU time, processes (threads count), file size, no core dumps.
- **A supervisor** (:mod:`rtsr.submissions.supervisor`), a child subreaper that enforces the
  wall-clock limit and kills every process left when the payload ends, ``setsid`` or not.
- **An environment from an allow-list** (:data:`ENV_ALLOWED`): no token, no ``HF_*``.

Where bubblewrap is missing or refused (no user namespaces), the same supervisor, limits and
environment apply without namespaces; :attr:`Outcome.isolation` is then ``"none"`` and
``rtsr validate`` says so in a WARN line. See docs/security.md for what each layer
stops and what it does not.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import glob
import json
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from rtsr.errors import SubmissionError

logger = logging.getLogger(__name__)

Isolation = Literal["bubblewrap", "none"]
SandboxMode = Literal["auto", "bubblewrap", "none"]

#: Environment variables a sandboxed process may inherit, when set here. Everything else
#: (tokens, HF_*, cloud credentials, the app's settings) is dropped.
ENV_ALLOWED = (
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "CUDA_VISIBLE_DEVICES",
    "NVIDIA_VISIBLE_DEVICES",
    "NVIDIA_DRIVER_CAPABILITIES",
    "LD_LIBRARY_PATH",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    # set on some CPUs, where older OpenBLAS builds crash without them
    "OPENBLAS_CORETYPE",
    "OPENBLAS_L2_SIZE",
    # the instruction sets oneDNN (torch's and OpenVINO's) and ATen may use: a host pinned to
    # AVX2, so that its results round as on an AVX2 CPU, pins what it evaluates too
    "ONEDNN_MAX_CPU_ISA",
    "DNNL_MAX_CPU_ISA",
    "ATEN_CPU_CAPABILITY",
)
#: ``$RTSR_SANDBOX``: ``auto`` (bubblewrap when it works here, else limits only), ``bubblewrap``
#: (refuse to run without it) or ``none`` (limits only, even where bubblewrap works).
SANDBOX_ENV = "RTSR_SANDBOX"
#: On a root host each payload runs as a user of its own, drawn from this range: one that owns
#: no file, and whose process count (the process limit counts per user) is the sandbox's alone.
SANDBOX_UIDS = range(200_000, 265_536)
#: Parts of /etc a Python process needs (the dynamic linker's cache, Debian's alternatives
#: for BLAS, time zones, user names); the rest of /etc stays out.
ETC_READ = (
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/alternatives",
    "/etc/localtime",
    "/etc/passwd",
    "/etc/group",
    "/etc/nsswitch.conf",
)
#: Most of a log a sandbox's stdout or stderr keeps (the tail).
LOG_TAIL_BYTES = 64 * 1024
#: Most of a file :func:`run` collects from the scratch folder.
COLLECT_BYTES = 16 * 1024**2
#: Size of the sandbox's own /tmp (a tmpfs, so in memory); ``$TMPDIR`` is the scratch folder.
TMPFS_BYTES = 256 * 1024**2
#: Seconds given to the supervisor beyond the wall-clock limit before it is killed itself.
GRACE_S = 30.0
#: The messages of a process that could not get memory: Python's, PyTorch's CPU allocator's,
#: C++'s and the C library's.
_MEMORY_ERRORS = re.compile(r"MemoryError|can't allocate memory|std::bad_alloc|cannot allocate memory", re.IGNORECASE)
#: The messages of a process that could not start a process or thread (EAGAIN).
_PROCESS_ERRORS = re.compile(r"Resource temporarily unavailable|can't start new thread|BlockingIOError")

GiB = 1024**3


@dataclass(frozen=True)
class Limits:
    """What one sandboxed run may use. Each bound applies to every process of the run
    (the memory and CPU ones per process; see docs/security.md)."""

    #: Bytes of memory each process may map: its address space on a CPU, its private
    #: writable memory where CUDA is used (CUDA reserves far more address space than it uses).
    memory_bytes: int = 8 * GiB
    #: Seconds from start to finish, for the whole run.
    wall_seconds: float | None = 300.0
    #: Seconds of CPU each process may use; None: as many as the wall clock allows.
    cpu_seconds: float | None = None
    #: Processes and threads at once.
    processes: int = 512
    #: Largest file a process may write, bytes.
    file_bytes: int = 4 * GiB

    def describe(self) -> str:
        """E.g. ``"8 GB memory, 300 s, 512 processes"``."""
        wall = f", {self.wall_seconds:g} s" if self.wall_seconds else ""
        cpu = f", {self.cpu_seconds:g} s CPU" if self.cpu_seconds else ""
        return f"{format_bytes(self.memory_bytes)} memory{wall}{cpu}, {self.processes} processes"


DEFAULT_LIMITS = Limits()


def format_bytes(n: int) -> str:
    """``n`` bytes as the largest whole-ish unit: ``"8 GB"``, ``"512 MB"`` (powers of 1024)."""
    for unit, size in (("TB", 1024**4), ("GB", GiB), ("MB", 1024**2), ("KB", 1024)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n} B"


@dataclass(frozen=True)
class Outcome:
    """How one sandboxed run ended."""

    #: The payload's exit status (negative: killed by that signal); None if it never started.
    returncode: int | None
    timed_out: bool
    #: The tails of its output (at most :data:`LOG_TAIL_BYTES` each), as text.
    stdout: str
    stderr: str
    isolation: Isolation
    limits: Limits
    #: Processes still running when the payload ended, all killed.
    leftover: int = 0
    elapsed_s: float = 0.0
    cpu_s: float = 0.0
    max_rss_bytes: int = 0
    #: Why the sandbox itself failed (not the payload), if it did.
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and not self.timed_out and self.returncode == 0

    def limit_hit(self) -> str | None:
        """Which limit ended the run, in words (``"the memory limit of 8 GB"``), or None."""
        returncode = self.returncode
        if returncode == -signal.SIGKILL and self.cpu_s < (self.limits.cpu_seconds or 0):
            returncode = None  # killed, but not for its CPU time (the kernel's OOM killer, say)
        return limit_hit(self.limits, self.timed_out, returncode, self.stderr)

    def failure(self) -> str | None:
        """One line on why the run failed, or None when it succeeded."""
        if self.error is not None:
            return f"the sandbox failed: {self.error}"
        if self.ok:
            return None
        hit = self.limit_hit()
        if hit is not None:
            return f"exceeded {hit}"
        assert self.returncode is not None
        last = [line for line in self.stderr.strip().splitlines() if line.strip()][-1:] or ["no message"]
        return f"the submission's process died ({describe_exit(self.returncode)}): {last[0][:200]}"


def describe_exit(code: int) -> str:
    """``"exit status 7"`` or ``"killed by SIGKILL"``."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


def limit_hit(limits: Limits, timed_out: bool, returncode: int | None, message: str) -> str | None:
    """Which of ``limits`` a run that ended so (with ``message`` its error text) ran into."""
    if timed_out:
        return f"the wall-clock limit of {limits.wall_seconds:g} s"
    if returncode in (-signal.SIGXCPU, -signal.SIGKILL) and limits.cpu_seconds:
        # RLIMIT_CPU sends SIGXCPU at the soft limit and SIGKILL at the hard one
        return f"the CPU-time limit of {limits.cpu_seconds:g} s"
    if returncode == -signal.SIGXFSZ:
        return f"the file-size limit of {format_bytes(limits.file_bytes)}"
    if returncode == 0 and not message:
        return None
    if "CUDA out of memory" not in message and _MEMORY_ERRORS.search(message):
        return f"the memory limit of {format_bytes(limits.memory_bytes)}"
    if _PROCESS_ERRORS.search(message):
        return f"the process limit of {limits.processes}"
    return None


# --- the host -----------------------------------------------------------------------------


def sandbox_mode() -> SandboxMode:
    """``$RTSR_SANDBOX``, checked.

    Raises:
        SubmissionError: it names no mode.
    """
    value = os.environ.get(SANDBOX_ENV, "auto") or "auto"
    if value not in ("auto", "bubblewrap", "none"):
        raise SubmissionError(f"${SANDBOX_ENV} must be auto, bubblewrap or none, got {value!r}")
    return value  # type: ignore[return-value]


@functools.lru_cache(maxsize=1)
def bubblewrap_problem() -> str | None:
    """Why bubblewrap cannot isolate here (missing, or refused by the host), or None when a
    trial sandbox with every namespace we use ran."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return "bubblewrap is not installed (apt-get install bubblewrap)"
    trial = [bwrap, *_namespace_args(), "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev", "true"]
    try:
        result = subprocess.run(trial, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"bubblewrap did not run: {e}"
    if result.returncode != 0:
        reason = (result.stderr.strip().splitlines() or [f"exit status {result.returncode}"])[-1]
        return f"bubblewrap is refused on this host: {reason}"
    return None


def isolation() -> Isolation:
    """The isolation sandboxes get on this host under ``$RTSR_SANDBOX``.

    Raises:
        SubmissionError: ``$RTSR_SANDBOX=bubblewrap`` but bubblewrap does not work here.
    """
    mode = sandbox_mode()
    if mode == "none":
        return "none"
    problem = bubblewrap_problem()
    if problem is None:
        return "bubblewrap"
    if mode == "bubblewrap":
        raise SubmissionError(f"${SANDBOX_ENV}=bubblewrap, but {problem}")
    return "none"


def isolation_note() -> str | None:
    """The WARN line for a host where sandboxes get no namespaces, or None."""
    if isolation() == "bubblewrap":
        return None
    why = "$RTSR_SANDBOX=none" if sandbox_mode() == "none" else bubblewrap_problem()
    return f"no network/filesystem isolation on this host ({why}); resource limits and clean-up still apply"


def _is_root() -> bool:
    return os.geteuid() == 0


def _namespace_args() -> list[str]:
    args = ["--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
    args += ["--die-with-parent", "--new-session"]
    if _is_root():
        # No user namespace: root maps only to root in one, and the kernel exempts root from
        # the process limit. The supervisor keeps these two capabilities to drop the payload
        # to an unprivileged user; bubblewrap drops every other one.
        args += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    else:
        args += ["--unshare-user", "--disable-userns"]
    return args


def _python_paths() -> list[Path]:
    """The folders a Python process needs: the installation, its packages, rtsr itself.

    Not every entry of ``sys.path``: ``python -m`` puts the current folder there, which may
    be a home folder with a token in it."""
    paths = {Path(sys.prefix), Path(sys.base_prefix), Path(sys.executable).resolve().parent}
    paths.update(Path(p) for p in sys.path if Path(p).name in ("site-packages", "dist-packages") and Path(p).is_dir())
    paths.add(Path(__file__).resolve().parents[1])  # the rtsr package, wherever it lives
    return sorted(paths)


def _library_paths() -> list[Path]:
    found = [Path(p) for p in os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p]
    found += [Path(p) for p in ("/usr/local/nvidia", "/usr/local/cuda") if Path(p).exists()]
    return found


def gpu_device_files() -> list[str]:
    """The NVIDIA device files of this host (empty without a GPU)."""
    return sorted(glob.glob("/dev/nvidia*") + glob.glob("/dev/dri/*"))


def _hub_repo(root: Path) -> Path | None:
    """The Hub cache folder of the repo (``models--org--name``) whose snapshot ``root`` is or
    lies in (huggingface_hub's cache: ``<repo>/snapshots/<commit>/...`` beside
    ``<repo>/blobs/``); None for any other folder."""
    real = root.resolve()
    for folder in (real, *real.parents):
        if folder.parent.name == "snapshots" and (folder.parent.parent / "blobs").is_dir():
            return folder.parent.parent
    return None


def _hub_blob(link: Path, root: Path) -> bool:
    """Whether ``link``, below ``root``, is a Hub snapshot's link to a file of its *own*
    repo's ``blobs/`` (``snapshots/<commit>/arch.py -> ../../blobs/<sha256>``): only a
    snapshot's links, and only into its repo's blobs, never a local folder's link into a cache."""
    repo = _hub_repo(root)
    if repo is None:
        return False
    real = link.resolve()
    return real.is_file() and real.parent == (repo / "blobs").resolve()


def _outside_targets(folder: Path) -> set[Path]:
    """The blob files that a Hub snapshot's links point to, to bind one by one beside it (not
    their folder: other files of the cache stay out). A local folder's links are never
    followed: they would carry a host path (a token file, another repo's blobs) in."""
    return {link.resolve() for link in folder.rglob("*") if link.is_symlink() and _hub_blob(link, folder)}


def _followed(link: Path, root: Path) -> bool:
    """Whether a link below ``root`` is followed into the sandbox: one to a file of ``root``'s
    own, or a Hub snapshot's link into its repo's blobs."""
    return link.resolve().is_relative_to(root.resolve()) or _hub_blob(link, root)


def links_leaving(folder: Path) -> list[Path]:
    """The links below ``folder`` (relative to it) that point outside it: what a local
    submission may not ship."""
    root = folder.resolve()
    return sorted(
        p.relative_to(folder) for p in folder.rglob("*") if p.is_symlink() and not p.resolve().is_relative_to(root)
    )


class _Mounts:
    """bubblewrap arguments that bind host paths at the same place, creating each parent
    folder first as ``0755`` (bubblewrap makes them ``0700``, which the payload's user cannot enter)."""

    def __init__(self) -> None:
        self.args: list[str] = []
        self._made: set[Path] = {Path("/")}

    def parents(self, path: Path) -> None:
        for parent in reversed(path.parents):
            if parent not in self._made:
                self.args += ["--perms", "0755", "--dir", str(parent)]
                self._made.add(parent)

    def bind(self, flag: str, path: str | Path, source: str | Path | None = None) -> None:
        """Bind ``source`` (default: ``path`` itself) at ``path``."""
        path = Path(path)
        self.parents(path)
        self.args += [flag, str(source or path), str(path)]
        self._made.add(path)


def _readable_by_all(folder: Path) -> bool:
    """Whether every file and folder below ``folder`` can be read by any user."""
    for path in [folder, *folder.rglob("*")]:
        if path.is_symlink() and not _followed(path, folder):
            continue  # not followed into the sandbox anyway
        mode = path.stat().st_mode  # through links: what the payload would open
        need = stat.S_IROTH | (stat.S_IXOTH if stat.S_ISDIR(mode) else 0)
        if mode & need != need:
            return False
    return True


def _stage_readable(source: Path, stage: Path) -> Path:
    """A copy of ``source`` that anyone can read, in ``stage``: Hub blobs' links followed,
    other links left out."""
    copy = stage / f"{len(list(stage.iterdir()))}"
    if source.is_dir():

        def unfollowed(folder: str, names: list[str]) -> set[str]:
            return {n for n in names if (Path(folder) / n).is_symlink() and not _followed(Path(folder) / n, source)}

        shutil.copytree(source, copy, symlinks=False, ignore=unfollowed)
    else:
        shutil.copy2(source, copy)
    for path in [copy, *copy.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return copy


def _bwrap_args(
    workdir: Path | None, readable: Iterable[Path], scratch: Path, gpu: bool, stage: Path | None = None
) -> list[str]:
    """The bubblewrap command line. With ``stage`` (when the payload runs as another user), inputs
    that not everyone can read (a zip extracted into a private folder) are bound from a
    readable copy made there."""
    bwrap = shutil.which("bwrap")
    assert bwrap is not None
    mounts = _Mounts()
    mounts.bind("--ro-bind", "/usr")
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        path = Path(top)
        if path.is_symlink():  # merged /usr: /bin -> usr/bin
            mounts.args += ["--symlink", os.readlink(path), top]
        elif path.is_dir():
            mounts.bind("--ro-bind", top)
    for etc in ETC_READ:
        mounts.bind("--ro-bind-try", etc)
    mounts.args += ["--proc", "/proc", "--dev", "/dev"]
    mounts.bind("--ro-bind", "/sys")
    if gpu:
        for device in gpu_device_files():
            mounts.bind("--dev-bind", device)
    # /tmp first, as a small tmpfs of its own: the folders bound below may lie inside it
    mounts.args += ["--perms", "1777", "--size", str(TMPFS_BYTES), "--tmpfs", "/tmp"]
    bound: list[Path] = [Path("/usr")]
    package = Path(__file__).resolve().parents[1]
    for path in [*_python_paths(), *_library_paths()]:
        if path.exists() and not any(path.is_relative_to(b) for b in bound):
            # rtsr itself may sit in a private checkout; the installation is assumed readable
            # (checking every file of it would cost each start seconds)
            private = path == package and stage is not None and not _readable_by_all(path)
            mounts.bind("--ro-bind", path, _stage_readable(path, stage) if private and stage else None)
            bound.append(path)
    for path in [*([workdir] if workdir else []), *readable]:
        path = path.resolve()
        if stage is not None and not _readable_by_all(path):
            mounts.bind("--ro-bind", path, _stage_readable(path, stage))
            continue
        for target in [path, *(_outside_targets(path) if path.is_dir() else ())]:
            mounts.bind("--ro-bind", target)
    mounts.bind("--bind", scratch)
    return [bwrap, *_namespace_args(), *mounts.args, "--chdir", str((workdir or scratch).resolve())]


def sandbox_env(scratch: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The whole environment of a sandboxed process: :data:`ENV_ALLOWED` from here, a home
    and temporary folder in the scratch folder, rtsr importable, the Hub offline."""
    env = {k: os.environ[k] for k in ENV_ALLOWED if os.environ.get(k)}
    env.setdefault("LANG", "C.UTF-8")
    python_bin = str(Path(sys.executable).parent)
    env.update(
        PATH=os.pathsep.join((python_bin, "/usr/local/bin", "/usr/bin", "/bin")),
        HOME=str(scratch),
        TMPDIR=str(scratch / "tmp"),
        XDG_CACHE_HOME=str(scratch / ".cache"),
        PYTHONPATH=str(Path(__file__).resolve().parents[2]),
        PYTHONUNBUFFERED="1",
        PYTHONDONTWRITEBYTECODE="1",
        PYTHONNOUSERSITE="1",
        HF_HUB_OFFLINE="1",
        # the payload's uid has no passwd entry: getpass.getuser() (torch names cache folders
        # with it, e.g. when FlopCounterMode imports torch._dynamo on a GPU) reads these first
        USER="sandbox",
        LOGNAME="sandbox",
    )
    env.update(extra or {})
    return env


def _rlimits(limits: Limits, gpu: bool) -> dict[str, int | list[int]]:
    # CUDA reserves tens of GB of address space it never touches, so where it may be used the
    # bound is on private writable memory (RLIMIT_DATA) rather than on addresses (RLIMIT_AS).
    memory = "RLIMIT_DATA" if gpu else "RLIMIT_AS"
    rlimits: dict[str, int | list[int]] = {
        memory: limits.memory_bytes,
        "RLIMIT_NPROC": limits.processes,
        "RLIMIT_FSIZE": limits.file_bytes,
        "RLIMIT_CORE": 0,
    }
    if limits.cpu_seconds:
        soft = max(1, int(limits.cpu_seconds))
        rlimits["RLIMIT_CPU"] = [soft, soft + 2]
    return rlimits


def read_untrusted(path: Path, limit: int, tail: bool = False, whole: bool = False) -> bytes | None:
    """At most ``limit`` bytes of a file the payload could have replaced (its scratch folder
    is its own): the first ones, or with ``tail`` the last; None unless it is a regular file,
    and with ``whole`` None for one larger than ``limit`` (found before anything is read).

    Opened without following a link and without blocking (a FIFO in its place would block an
    ``open`` for reading forever), then checked to be a regular file before any read.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or (whole and info.st_size > limit):
            return None
        if tail:
            f.seek(max(0, f.seek(0, os.SEEK_END) - limit))
        return f.read(limit)


def _read_tail(path: Path) -> str:
    """The last :data:`LOG_TAIL_BYTES` of a log the payload wrote, as text ("" if it is gone
    or is no longer a regular file)."""
    return (read_untrusted(path, LOG_TAIL_BYTES, tail=True) or b"").decode("utf-8", errors="replace")


#: The one thread every sandbox is started from (see :meth:`Sandbox.popen`); it lives as long
#: as this process, so its sandboxes end with the process and not before.
_LAUNCHER = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="rtsr-sandbox-launcher")


@dataclass
class Sandbox:
    """A scratch folder and the command line that runs a payload in it; :meth:`close`
    removes the folder. Use :func:`run` or :func:`start` rather than this directly."""

    #: The payload's working directory (read-only); None: the scratch folder.
    workdir: Path | None
    readable: Sequence[Path] = ()
    limits: Limits = DEFAULT_LIMITS
    gpu: bool = False
    env: dict[str, str] = field(default_factory=dict)
    scratch: Path = field(init=False)
    isolation: Isolation = field(init=False)

    def __post_init__(self) -> None:
        self.isolation = isolation()
        self.scratch = Path(tempfile.mkdtemp(prefix="rtsr-sandbox-"))
        (self.scratch / "tmp").mkdir()
        root_host = self.isolation == "bubblewrap" and _is_root()
        self._drop_uid = SANDBOX_UIDS[secrets.randbelow(len(SANDBOX_UIDS))] if root_host else None
        self._stage: Path | None = None
        if self._drop_uid is not None:
            for path in (self.scratch, self.scratch / "tmp"):
                os.chown(path, self._drop_uid, self._drop_uid)
            self._stage = Path(tempfile.mkdtemp(prefix="rtsr-sandbox-inputs-"))
            self._stage.chmod(0o755)

    @property
    def stdout_path(self) -> Path:
        return self.scratch / ".stdout"

    @property
    def stderr_path(self) -> Path:
        return self.scratch / ".stderr"

    def command(
        self, argv: Sequence[str], status_fd: int, pass_fds: Sequence[int] = (), control_fd: int | None = None
    ) -> list[str]:
        config = {
            "status_fd": status_fd,
            "pass_fds": list(pass_fds),
            "control_fd": control_fd,
            "stdout": str(self.stdout_path),
            "stderr": str(self.stderr_path),
            "rlimits": _rlimits(self.limits, self.gpu),
            "wall_seconds": self.limits.wall_seconds,
            "uid": self._drop_uid,
        }
        supervisor = [sys.executable, "-m", "rtsr.submissions.supervisor", json.dumps(config), "--", *argv]
        if self.isolation == "none":
            return supervisor
        return [*_bwrap_args(self.workdir, self.readable, self.scratch, self.gpu, self._stage), *supervisor]

    def popen(
        self, argv: Sequence[str], pass_fds: Sequence[int] = (), control_fd: int | None = None
    ) -> tuple[subprocess.Popen[bytes], int]:
        """Start the supervisor; return it and the read end of its status pipe.

        Started from :data:`_LAUNCHER`'s thread, whatever thread calls: bubblewrap's
        ``--die-with-parent`` (``PR_SET_PDEATHSIG``) fires when the *thread* that started it
        exits, and the app starts model processes from request threads that its pool retires
        when idle, which killed every served model about a minute after its start.
        """
        return _LAUNCHER.submit(self._popen, argv, pass_fds, control_fd).result()

    def _popen(
        self, argv: Sequence[str], pass_fds: Sequence[int], control_fd: int | None
    ) -> tuple[subprocess.Popen[bytes], int]:
        status_read, status_write = os.pipe()
        try:
            process = subprocess.Popen(
                self.command(argv, status_write, pass_fds, control_fd),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,  # bubblewrap's own errors; the payload's go to files
                cwd=self.workdir or self.scratch,
                env=sandbox_env(self.scratch, self.env),
                pass_fds=(status_write, *pass_fds, *([control_fd] if control_fd is not None else [])),
                start_new_session=True,
            )
        finally:
            os.close(status_write)
        return process, status_read

    def finish(self, process: subprocess.Popen[bytes], status_read: int) -> Outcome:
        """Wait for the supervisor (killing it past the wall clock and :data:`GRACE_S`) and
        read how the run ended."""
        timeout = self.limits.wall_seconds + GRACE_S if self.limits.wall_seconds else None
        try:
            _, bwrap_err = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # --die-with-parent takes the sandbox along
            _, bwrap_err = process.communicate()
        with os.fdopen(status_read, "rb") as f:
            status_line = f.read(64 * 1024).decode("utf-8", errors="replace").strip()
        stdout, stderr = _read_tail(self.stdout_path), _read_tail(self.stderr_path)
        base = Outcome(None, False, stdout, stderr, self.isolation, self.limits)
        try:
            status = json.loads(status_line) if status_line else {}
        except json.JSONDecodeError:
            status = {}
        if "returncode" not in status:
            why = status.get("error") or (bwrap_err or b"").decode(errors="replace").strip().splitlines()[-1:]
            why = why if isinstance(why, str) else (why[0] if why else describe_exit(process.returncode))
            return replace(base, error=str(why))
        return replace(
            base,
            returncode=int(status["returncode"]),
            timed_out=bool(status["timed_out"]),
            leftover=int(status["leftover"]),
            elapsed_s=float(status["elapsed_s"]),
            cpu_s=float(status["cpu_s"]),
            max_rss_bytes=int(status["max_rss_bytes"]),
        )

    def close(self) -> None:
        shutil.rmtree(self.scratch, ignore_errors=True)
        if self._stage is not None:
            shutil.rmtree(self._stage, ignore_errors=True)


def run(
    argv: Sequence[str],
    workdir: Path,
    *,
    readable: Sequence[Path] = (),
    limits: Limits = DEFAULT_LIMITS,
    gpu: bool = False,
    env: dict[str, str] | None = None,
    collect: Sequence[str] = (),
) -> tuple[Outcome, dict[str, bytes]]:
    """Run ``argv`` in a sandbox whose working directory is ``workdir`` (read-only, like
    ``readable``), and return how it ended with the scratch files named in ``collect``
    (paths relative to the scratch folder, at most 16 MB each; missing ones, and any that is not a
    regular file, are left out).

    The scratch folder is ``$HOME`` and ``$TMPDIR`` inside, and is removed afterwards.
    ``gpu`` makes the GPU's device files visible. ``env`` adds variables to the allow-list's.

    Raises:
        SubmissionError: ``$RTSR_SANDBOX`` is invalid, or demands bubblewrap where it fails.
    """
    sandbox = Sandbox(Path(workdir), readable, limits, gpu, dict(env or {}))
    try:
        process, status_read = sandbox.popen(argv)
        outcome = sandbox.finish(process, status_read)
        files = {}
        for name in collect:
            content = read_untrusted(sandbox.scratch / name, COLLECT_BYTES)
            if content is not None:
                files[name] = content
        return outcome, files
    finally:
        sandbox.close()


class SandboxedProcess:
    """A long-lived sandboxed payload with a socket to talk to it (:attr:`channel`); the
    payload finds its end as file descriptor ``$RTSR_CHANNEL_FD``."""

    def __init__(self, sandbox: Sandbox, argv: Sequence[str]) -> None:
        self.sandbox = sandbox
        self.channel, theirs = socket.socketpair()
        # the supervisor's own channel (the payload never holds it): kill what a request left
        self._control, supervisors = socket.socketpair()
        try:
            sandbox.env["RTSR_CHANNEL_FD"] = str(theirs.fileno())
            self._process, self._status = sandbox.popen(argv, (theirs.fileno(),), supervisors.fileno())
        except BaseException:
            self.channel.close()
            self._control.close()
            sandbox.close()
            raise
        finally:
            theirs.close()
            supervisors.close()
        self._outcome: Outcome | None = None
        # one never closed (dropped, or still open when the interpreter exits) is ended all
        # the same, and its scratch folder removed
        self._finalizer = weakref.finalize(
            self, _end, self.channel, self._process, self._status, sandbox, self._control
        )

    @property
    def alive(self) -> bool:
        return self._outcome is None and self._process.poll() is None

    def kill(self) -> None:
        """SIGKILL the sandbox (bubblewrap, and with it every process in its namespace) at once,
        from any thread; :meth:`close` still cleans up."""
        if self._process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._process.pid, signal.SIGKILL)

    def kill_strays(self, timeout_s: float = 10.0) -> int:
        """Kill every process of the sandbox but the payload (what it started, detached or
        not), through the supervisor; return how many there were.

        Raises:
            OSError: the supervisor did not answer within ``timeout_s`` (``TimeoutError``) or
                is gone.
        """
        self._control.settimeout(timeout_s)
        self._control.sendall(b"k")
        answer = b""
        while not answer.endswith(b"\n"):
            chunk = self._control.recv(64)
            if not chunk:
                raise ConnectionError("the supervisor is gone")
            answer += chunk
        return int(answer)

    def close(self) -> Outcome:
        """End the payload (closing its channel first, so it can exit by itself) and every
        process it left, remove the scratch folder, and say how it ended."""
        if self._outcome is None:
            self._finalizer.detach()
            self._outcome = _end(self.channel, self._process, self._status, self.sandbox, self._control)
        return self._outcome


def _end(
    channel: socket.socket, process: subprocess.Popen[bytes], status: int, sandbox: Sandbox, control: socket.socket
) -> Outcome:
    """Close a long-lived sandbox's channel, wait for its payload to end (then make it), and
    clean up: :meth:`SandboxedProcess.close`."""
    channel.close()
    control.close()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        # the supervisor kills the payload and what it left; bubblewrap, its namespace
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
    try:
        return sandbox.finish(process, status)
    finally:
        sandbox.close()


def start(
    argv: Sequence[str],
    workdir: Path | None,
    *,
    readable: Sequence[Path] = (),
    limits: Limits = DEFAULT_LIMITS,
    gpu: bool = False,
    env: dict[str, str] | None = None,
) -> SandboxedProcess:
    """Start ``argv`` in a sandbox, as :func:`run` does, and return at once with a channel to
    it. ``limits.wall_seconds`` of None lets it run until :meth:`SandboxedProcess.close`;
    ``workdir`` of None starts it in its scratch folder.

    Raises:
        SubmissionError: as :func:`run`.
    """
    return SandboxedProcess(Sandbox(workdir and Path(workdir), readable, limits, gpu, dict(env or {})), argv)
