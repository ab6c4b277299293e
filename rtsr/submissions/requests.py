"""Evaluation requests and their results: the store the page, the CLI and the workers share.

A request is one submission (a Hub repo pinned to a commit, or a local folder or zip copied
into the store when it is submitted) for one track. It moves through four states::

    pending --claim--> running --finish--> finished
                          |  \\--fail----> failed
                          \\-- lease expired (the worker died) --> pending (again, at most
                               MAX_ATTEMPTS times, then failed)

The embedded store is one folder (``--store`` / ``$RTSR_STORE``): ``requests.sqlite``
(Python's ``sqlite3``, WAL mode) for the requests, ``results/<request>/<set>.json`` for the
results documents (the ``rtsr.evaluate`` schema; the leaderboard reads them as they are),
``submissions/<request>/`` for local submissions, and ``registry.json``: the finished,
passing submissions the app may run, pinned and hashed like the bundled registry.

Every state change is one ``BEGIN IMMEDIATE`` transaction, so two workers on one store
never claim the same request, and a worker can only finish or fail a request it still holds
(a worker whose lease expired, and whose request another worker took, changes nothing).
"""

from __future__ import annotations

import abc
import contextlib
import datetime
import hashlib
import json
import logging
import os
import re
import shutil
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, get_args

from rtsr.bundled import default_store_folder
from rtsr.errors import InputError, RTSRError, SubmissionError, first_line, printable
from rtsr.submissions.registry import Registry, RegistryEntry, reserved

if TYPE_CHECKING:
    from rtsr.submissions.submission import Submission

logger = logging.getLogger(__name__)

RequestStatus = Literal["pending", "running", "finished", "failed"]
STATUSES: Final[tuple[RequestStatus, ...]] = get_args(RequestStatus)

STORE_ENV: Final = "RTSR_STORE"
#: A store in a Hub dataset is named ``hf://datasets/ORG/NAME``.
HUB_SCHEME: Final = "hf://"
#: The default store: ``store/`` in a clone (ignored by git), a user folder when installed
#: (:func:`rtsr.bundled.default_store_folder`); on a Space, point ``$RTSR_STORE`` at the persistent ``/data``.
DEFAULT_STORE: Final = default_store_folder()
#: A running request whose worker has not renewed its lease for this long goes back to
#: pending: the worker is presumed dead. Workers renew every LEASE_S / 3.
LEASE_S: Final = 120.0
#: The lease of a store on the Hub: each renewal is a commit, and the Hub limits how often a
#: repo may be committed to, so renewals come minutes apart (every 5 minutes).
HUB_LEASE_S: Final = 900.0
#: A request whose worker died this many times is failed rather than retried forever (it may
#: be what kills the worker).
MAX_ATTEMPTS: Final = 3
#: Requests one submitter may make in a day from the page (a setting of the app).
DAILY_LIMIT: Final = 3

_SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE NOT NULL,
    spec TEXT NOT NULL,
    repo TEXT,
    revision TEXT NOT NULL,
    track INTEGER NOT NULL,
    submitter TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    submitted REAL NOT NULL,
    started REAL,
    finished REAL,
    worker TEXT,
    lease_until REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    device TEXT,
    entry_id TEXT,
    results TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX IF NOT EXISTS requests_status ON requests (status, seq);
"""


def _iso(t: float | None) -> str | None:
    return datetime.datetime.fromtimestamp(t, datetime.UTC).isoformat(timespec="seconds") if t else None


@dataclass(frozen=True)
class Request:
    """One evaluation request, as stored."""

    id: str
    #: What was submitted: ``org/name@<commit>``, or ``submissions/<id>/<name>`` in the store.
    spec: str
    #: ``org/name`` for Hub submissions; None for local ones.
    repo: str | None
    #: The pinned Hub commit, or ``sha256:<16 hex>`` over a local submission's file hashes.
    revision: str
    track: int
    submitter: str
    status: RequestStatus
    #: Why it failed, in one or two lines; empty otherwise.
    reason: str
    #: Unix times (seconds).
    submitted: float
    started: float | None = None
    finished: float | None = None
    worker: str | None = None
    lease_until: float | None = None
    attempts: int = 0
    #: The device that measured the runtimes.
    device: str | None = None
    #: The id it is served under in the store's registry, once finished.
    entry_id: str | None = None
    #: The results documents, as paths relative to the store.
    results: list[str] = field(default_factory=list)

    @property
    def is_hub(self) -> bool:
        return self.repo is not None

    @property
    def url(self) -> str | None:
        """The submission on the Hub at the evaluated commit."""
        return f"https://huggingface.co/{self.repo}/tree/{self.revision}" if self.repo else None

    def as_dict(self) -> dict[str, Any]:
        """The request for ``rtsr requests --json`` and the page: times as ISO 8601 UTC."""
        data = asdict(self)
        for key in ("submitted", "started", "finished", "lease_until"):
            data[key] = _iso(data[key])
        return {**data, "commit": self.revision, "url": self.url}

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Request:
        data = dict(row)
        data.pop("seq")
        data["results"] = json.loads(data["results"])
        return cls(**data)


class StoreError(RTSRError):
    """The request store cannot be read or written (a corrupt database, a full disk): the
    maintainer's problem, never a request's; one line that names the store."""


def default_store() -> Path:
    """``$RTSR_STORE`` if set, else :data:`DEFAULT_STORE`."""
    return Path(os.environ.get(STORE_ENV) or DEFAULT_STORE)


class Store(abc.ABC):
    """What the page, the CLI and the workers use of a request store, whichever keeps it:
    :class:`SqliteStore` (one folder) or :class:`rtsr.submissions.hub_store.HubStore` (a Hub
    dataset). Both give the same guarantees: every state change is atomic, two workers never
    claim the same request, and a worker can only change a request it still holds.

    Files are read from :attr:`folder`: ``results/<request>/<set>.json``,
    ``submissions/<request>/<name>/`` and ``registry.json``.
    """

    #: Seconds a claim lasts unless renewed (workers renew every third of it).
    lease_s: float = LEASE_S
    #: While a remote store cannot be read: since when (Unix time) and why; reads then give
    #: its state as last read.
    unreachable: tuple[float, str] | None = None

    @property
    @abc.abstractmethod
    def folder(self) -> Path:
        """The store's files as of its last read."""

    @property
    @abc.abstractmethod
    def work_dir(self) -> Path:
        """A local folder a worker may keep its scratch files in (prepared test sets)."""

    @abc.abstractmethod
    def describe(self) -> str:
        """Where the store is, as the user named it."""

    @abc.abstractmethod
    def where_kept(self) -> str:
        """Where requests and results are kept, for a page: no path of the server's."""

    def remote_copy(self) -> tuple[str, str] | None:
        """The Hub dataset and commit that hold the local submissions' copies, for a job on
        another machine to fetch; None for a store on this machine's disk."""
        return None

    @property
    def results_dir(self) -> Path:
        return self.folder / "results"

    @property
    def submissions_dir(self) -> Path:
        return self.folder / "submissions"

    @property
    def registry_path(self) -> Path:
        return self.folder / "registry.json"

    def registry(self) -> Registry:
        """The finished, passing submissions the app may run."""
        return Registry.read(self.registry_path)

    @abc.abstractmethod
    def get(self, request_id: str) -> Request:
        """One request.

        Raises:
            InputError: no request has that id.
            StoreError: the store cannot be read.
        """

    @abc.abstractmethod
    def list(self, status: RequestStatus | None = None, fresh: bool = True) -> list[Request]:
        """Requests in the order they were made, optionally of one status. ``fresh=False``
        takes them as last read (a page between its looks at a store on the Hub)."""

    @abc.abstractmethod
    def version(self) -> str:
        """Changes whenever a request is made or changes state: what a page polls.

        Raises:
            StoreError: the store cannot be read.
        """

    @abc.abstractmethod
    def submit(
        self,
        spec: str,
        repo: str | None,
        revision: str,
        track: int,
        submitter: str,
        daily_limit: int | None = None,
        local_folder: Path | None = None,
        local_name: str | None = None,
    ) -> Request:
        """Queue a request; return it, pending. ``local_folder`` (a local submission's files)
        is copied into the store as ``submissions/<request>/<local_name>``, so that the request
        runs what was submitted even if the folder changes afterwards, under the name it was
        submitted with.

        Raises:
            SubmissionError: the same submission at the same revision is already queued or
                evaluated for this track (naming that request), or ``submitter`` made
                ``daily_limit`` requests in the last 24 hours.
        """

    @abc.abstractmethod
    def claim(self, worker: str, lease_s: float | None = None) -> Request | None:
        """Take the oldest pending request for ``worker``, leased for ``lease_s`` seconds
        (:attr:`lease_s` by default); None when nothing is pending. Requests whose worker's
        lease ran out first go back to pending (or fail after :data:`MAX_ATTEMPTS`)."""

    @abc.abstractmethod
    def renew(self, request_id: str, worker: str, lease_s: float | None = None) -> None:
        """Extend ``worker``'s lease on a running request.

        Raises:
            LeaseLost: the request is no longer ``worker``'s.
        """

    @abc.abstractmethod
    def fail(self, request_id: str, worker: str, reason: str) -> None:
        """Mark a running request failed with ``reason`` (cut to two lines).

        Raises:
            LeaseLost: the request is no longer ``worker``'s.
        """

    @abc.abstractmethod
    def finish(
        self,
        request_id: str,
        worker: str,
        documents: dict[str, dict[str, Any]],
        entry: RegistryEntry,
        device: str,
    ) -> Request:
        """Record a passing evaluation, all or nothing: its results documents (``{set name:
        document}``) under ``results/<request>/``, ``entry`` in the store's registry (its id
        made unique; the same submission's entry replaced, never added twice, when a retry
        finishes it again) and the request marked finished, visible together.

        Raises:
            LeaseLost: the request is no longer ``worker``'s (nothing is written).
            InputError: a document is not a valid ``rtsr.evaluate`` document.
            StoreError: nothing could be recorded (nothing is left of the attempt).
        """


def stored_reason(text: str) -> str:
    """A failure's reason as stored: two printable lines at most."""
    return "\n".join(printable(line) for line in text.strip().splitlines()[:2])[:600]


def check_documents(request_id: str, documents: dict[str, dict[str, Any]]) -> None:
    """A document the leaderboard could not read is refused before anything is written."""
    from rtsr.results.schema import Evaluation

    for name, document in documents.items():
        Evaluation.from_document(document, f"{request_id}/{name}")


def unique_entry_id(registry: Registry, entry: RegistryEntry, request_id: str) -> str:
    """The id ``entry`` is served under: a retry of the very same submission (its earlier
    finish lost) replaces its entry; an id already taken, or a bundled model's, gets the
    request's id appended."""
    registry.entries = [e for e in registry.entries if (e.source, e.revision) != (entry.source, entry.revision)]
    taken = {e.id for e in registry.entries} | reserved()[0]
    return entry.id if entry.id not in taken else f"{entry.id}-{request_id}"


class SqliteStore(Store):
    """The embedded store in ``folder`` (created on first use).

    Raises:
        InputError: the folder cannot be created or the database cannot be opened.
    """

    def __init__(self, folder: str | Path | None = None) -> None:
        self._folder = Path(folder) if folder is not None else default_store()
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise InputError(f"{self.folder}: cannot open the request store ({e.strerror})") from None
        try:
            with self._connect() as db:
                db.executescript(_SCHEMA)
        except StoreError:
            # every use says so in one line; the app keeps serving what does not need the store
            pass

    @property
    def folder(self) -> Path:
        return self._folder

    @property
    def work_dir(self) -> Path:
        return self._folder / "work"

    def describe(self) -> str:
        return str(self._folder)

    def where_kept(self) -> str:
        return "on this machine's disk: a Space loses them when it restarts"

    @property
    def database(self) -> Path:
        return self.folder / "requests.sqlite"

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """A connection; any database error in its use (a corrupt file, a full disk, a row
        that does not read as a request) is a :class:`StoreError`.

        Raises:
            StoreError: the store cannot be used (one line).
        """
        try:
            # autocommit mode: transactions are the explicit BEGIN IMMEDIATE blocks below
            db = sqlite3.connect(self.database, timeout=60, isolation_level=None)
        except sqlite3.Error as e:
            raise StoreError(f"{self.database}: the request store cannot be opened ({first_line(e)})") from None
        db.row_factory = sqlite3.Row
        try:
            db.execute("PRAGMA journal_mode=WAL")
            yield db
        except sqlite3.DatabaseError as e:
            raise StoreError(f"{self.database}: the request store cannot be used ({first_line(e)})") from None
        finally:
            db.close()

    def _requests(self, rows: list[sqlite3.Row]) -> list[Request]:
        try:
            return [Request.from_row(r) for r in rows]
        except (TypeError, ValueError, KeyError) as e:  # a row written by hand, or damaged
            raise StoreError(f"{self.database}: a request does not read back ({first_line(e)})") from None

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: the database lock is taken at the start (BEGIN IMMEDIATE),
        so a read-then-write inside cannot interleave with another process's."""
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    # --- reading -------------------------------------------------------------------------

    def get(self, request_id: str) -> Request:
        with self._connect() as db:
            row = db.execute("SELECT * FROM requests WHERE id = ?", (request_id,)).fetchone()
            if row is None:
                raise InputError(f"no request {request_id!r} in {self.folder}")
            return self._requests([row])[0]

    def list(self, status: RequestStatus | None = None, fresh: bool = True) -> list[Request]:
        # a local file: every read is fresh, and cheap
        with self._connect() as db:
            if status is None:
                rows = db.execute("SELECT * FROM requests ORDER BY seq").fetchall()
            else:
                rows = db.execute("SELECT * FROM requests WHERE status = ? ORDER BY seq", (status,)).fetchall()
            return self._requests(rows)

    def version(self) -> str:
        return ",".join(f"{r.id}:{r.status}" for r in self.list())

    # --- submitting ----------------------------------------------------------------------

    def submit(
        self,
        spec: str,
        repo: str | None,
        revision: str,
        track: int,
        submitter: str,
        daily_limit: int | None = None,
        local_folder: Path | None = None,
        local_name: str | None = None,
    ) -> Request:
        # the duplicate and the daily limit are read, and the row written, in one transaction
        now = time.time()
        with self._transaction() as db:
            same = db.execute(
                "SELECT id, status FROM requests WHERE revision = ? AND track = ? AND status != 'failed'"
                " AND (repo IS ? ) ORDER BY seq LIMIT 1",
                (revision, track, repo),
            ).fetchone()
            if same is not None:
                what = f"{repo}@{revision}" if repo else f"this submission ({revision})"
                raise SubmissionError(
                    f"{what} is already submitted for Track {track}: request {same['id']} ({same['status']})"
                )
            if daily_limit is not None:
                (count,) = db.execute(
                    "SELECT COUNT(*) FROM requests WHERE submitter = ? AND submitted > ?",
                    (submitter, now - 86400),
                ).fetchone()
                if count >= daily_limit:
                    raise SubmissionError(
                        f"{submitter} has made {count} requests in the last 24 hours, the limit is {daily_limit}:"
                        " try again tomorrow"
                    )
            cursor = db.execute(
                "INSERT INTO requests (id, spec, repo, revision, track, submitter, status, submitted)"
                " VALUES ('', ?, ?, ?, ?, ?, 'pending', ?)",
                (spec, repo, revision, track, submitter, now),
            )
            request_id = f"req-{cursor.lastrowid:05d}"
            if local_folder is not None:
                spec = f"submissions/{request_id}/{safe_name(local_name or local_folder.name)}"
                target = self.folder / spec
                shutil.rmtree(target.parent, ignore_errors=True)
                try:
                    # links (only ones within the folder: submit refuses others) are copied as
                    # links, never followed
                    shutil.copytree(local_folder, target, symlinks=True)
                except OSError as e:
                    shutil.rmtree(target.parent, ignore_errors=True)
                    raise InputError(f"{local_folder}: cannot be copied into the store ({e})") from None
            db.execute("UPDATE requests SET id = ?, spec = ? WHERE seq = ?", (request_id, spec, cursor.lastrowid))
        return self.get(request_id)

    # --- working -------------------------------------------------------------------------

    def claim(self, worker: str, lease_s: float | None = None) -> Request | None:
        now, lease_s = time.time(), lease_s or self.lease_s
        with self._transaction() as db:
            db.execute(
                "UPDATE requests SET status = 'failed', finished = ?, worker = NULL, lease_until = NULL,"
                " reason = 'its worker stopped while evaluating it ' || attempts || ' times; not retried'"
                " WHERE status = 'running' AND lease_until < ? AND attempts >= ?",
                (now, now, MAX_ATTEMPTS),
            )
            db.execute(
                "UPDATE requests SET status = 'pending', worker = NULL, lease_until = NULL, started = NULL"
                " WHERE status = 'running' AND lease_until < ?",
                (now,),
            )
            row = db.execute("SELECT seq FROM requests WHERE status = 'pending' ORDER BY seq LIMIT 1").fetchone()
            if row is None:
                return None
            db.execute(
                "UPDATE requests SET status = 'running', worker = ?, started = ?, lease_until = ?,"
                " attempts = attempts + 1, reason = '' WHERE seq = ?",
                (worker, now, now + lease_s, row["seq"]),
            )
            claimed = db.execute("SELECT * FROM requests WHERE seq = ?", (row["seq"],)).fetchone()
        return self._requests([claimed])[0]

    def _owned(self, db: sqlite3.Connection, request_id: str, worker: str) -> sqlite3.Row:
        row = db.execute(
            "SELECT * FROM requests WHERE id = ? AND status = 'running' AND worker = ?", (request_id, worker)
        ).fetchone()
        if row is None:
            raise LeaseLost(f"{request_id}: no longer held by worker {worker} (its lease expired)")
        return row

    def renew(self, request_id: str, worker: str, lease_s: float | None = None) -> None:
        with self._transaction() as db:
            self._owned(db, request_id, worker)
            until = time.time() + (lease_s or self.lease_s)
            db.execute("UPDATE requests SET lease_until = ? WHERE id = ?", (until, request_id))

    def fail(self, request_id: str, worker: str, reason: str) -> None:
        reason = stored_reason(reason)
        with self._transaction() as db:
            self._owned(db, request_id, worker)
            db.execute(
                "UPDATE requests SET status = 'failed', reason = ?, finished = ?, lease_until = NULL WHERE id = ?",
                (reason, time.time(), request_id),
            )

    def finish(
        self,
        request_id: str,
        worker: str,
        documents: dict[str, dict[str, Any]],
        entry: RegistryEntry,
        device: str,
    ) -> Request:
        """Record a passing evaluation, all or nothing: its results documents (``{set name:
        document}``) under ``results/<request>/``, ``entry`` in the store's registry (its id
        made unique; the same submission's entry replaced, never added twice, when a retry
        finishes it again) and the request marked finished, in one transaction of the
        store's. The documents are written apart first and moved in place, with the
        registry, just before the transaction commits; if anything fails (a full disk), both
        are put back as they were and the request stays running, for its lease to return it.

        Raises:
            LeaseLost: the request is no longer ``worker``'s (nothing is written).
            InputError: a document is not a valid ``rtsr.evaluate`` document (nothing is
                written).
            StoreError: the results, the registry or the database could not be written
                (nothing is left of the attempt).
        """
        from rtsr.results.schema import write_evaluation

        check_documents(request_id, documents)
        folder = self.results_dir / request_id
        stage = self.folder / "work" / "finishing" / request_id
        registry_before: bytes | None = None
        placed = False
        try:
            with self._transaction() as db:
                self._owned(db, request_id, worker)
                # read under the store's lock: what a failure puts back is what no other
                # finish has changed since
                registry_before = self.registry_path.read_bytes() if self.registry_path.exists() else None
                registry = self.registry()
                entry_id = unique_entry_id(registry, entry, request_id)
                shutil.rmtree(stage, ignore_errors=True)
                paths = []
                for name, document in documents.items():
                    # the documents name the model as it is served
                    served = {**document, "model": {**document["model"], "id": entry_id}}
                    write_evaluation(served, stage / f"{safe_name(name)}.json")
                    paths.append(f"results/{request_id}/{safe_name(name)}.json")
                registry.add(RegistryEntry(**{**asdict(entry), "id": entry_id}))
                db.execute(
                    "UPDATE requests SET status = 'finished', finished = ?, lease_until = NULL, device = ?,"
                    " entry_id = ?, results = ? WHERE id = ?",
                    (time.time(), device, entry_id, json.dumps(paths), request_id),
                )
                # last, just before the commit: the board and the app see them with the state
                shutil.rmtree(folder, ignore_errors=True)  # a dead worker's earlier attempt
                folder.parent.mkdir(parents=True, exist_ok=True)
                placed = True
                try:
                    os.replace(stage, folder)
                    registry.write()
                except (OSError, InputError):
                    # put back while the lock is held
                    placed = False
                    shutil.rmtree(folder, ignore_errors=True)
                    self._restore_registry(registry_before)
                    raise
        except (OSError, InputError, StoreError) as e:
            if placed:
                # the commit itself failed: put back, after the lock (a finish of another
                # request in between would lose its entry; a commit failing is rare)
                shutil.rmtree(folder, ignore_errors=True)
                self._restore_registry(registry_before)
            if isinstance(e, StoreError):
                raise
            # (the documents were checked above: an InputError here is a file that cannot be written)
            raise StoreError(f"{self.folder}: cannot record {request_id}'s results ({first_line(e)})") from None
        finally:
            shutil.rmtree(stage, ignore_errors=True)
        return self.get(request_id)

    def _restore_registry(self, before: bytes | None) -> None:
        try:
            if before is None:
                self.registry_path.unlink(missing_ok=True)
            else:
                tmp = self.registry_path.with_name(".registry.json.restore")
                tmp.write_bytes(before)
                os.replace(tmp, self.registry_path)
        except OSError as e:
            logger.error("%s: could not put the registry back (%s)", self.registry_path, e.strerror)


def local_revision(submission: Submission) -> str:
    """What pins a local submission as a commit pins a Hub repo: ``sha256:<16 hex>`` over its
    files' hashes."""
    digest = hashlib.sha256(json.dumps(submission.hashes(), sort_keys=True).encode()).hexdigest()
    return f"sha256:{digest[:16]}"


class LeaseLost(SubmissionError):
    """A worker tried to change a request it no longer holds."""


def safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name).strip(".") or "set"


#: ``org/name`` or ``org/name@<revision>`` (a branch, tag or commit; no ``..``, which the
#: local Hub cache would read as a path).
HUB_REPO = re.compile(r"^(?P<repo>[\w.-]+/[\w.-]+)(?:@(?P<revision>(?!.*\.\.)\w[\w.\-/]*))?$")


def submit(
    store: Store,
    spec: str,
    track: int,
    submitter: str,
    daily_limit: int | None = None,
    allow_local: bool = True,
) -> Request:
    """Queue ``spec`` for ``track``: ``org/name`` (pinned now to the commit its main branch
    points at), ``org/name@<revision>``, or, with ``allow_local`` (the maintainer's CLI, never
    the page), a local folder or zip (copied into the store).

    Raises:
        InputError: an unknown track.
        SubmissionError: not a submission, a repo or revision not found, a duplicate, or
            over ``daily_limit`` (see :meth:`Store.submit`).
    """
    from rtsr.constants import TRACK_SCALES
    from rtsr.submissions.hub import resolve
    from rtsr.submissions.sandbox import links_leaving
    from rtsr.submissions.submission import open_submission

    if track not in TRACK_SCALES:
        raise InputError(f"track must be one of {', '.join(map(str, TRACK_SCALES))}, got {track}")
    spec = spec.strip()
    path = Path(spec)
    if allow_local and path.exists():
        submission = open_submission(path)
        leaving = links_leaving(submission.root)
        if leaving:
            raise SubmissionError(
                f"{leaving[0].as_posix()} is a link that leaves the submission's folder: ship the file itself"
                + (f" ({len(leaving) - 1} more such links)" if len(leaving) > 1 else "")
            )
        return store.submit(
            str(path),
            None,
            local_revision(submission),
            track,
            submitter,
            daily_limit,
            local_folder=submission.root,
            local_name=submission.name,
        )
    match = HUB_REPO.match(spec)
    if match is None:
        raise SubmissionError(f"{spec!r}: not a folder, a zip, or a Hub repo as org/name[@revision]")
    commit = resolve(match["repo"], match["revision"])
    return store.submit(f"{match['repo']}@{commit}", match["repo"], commit, track, submitter, daily_limit)
