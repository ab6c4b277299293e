"""The request store in a Hugging Face Hub dataset: ``hf://datasets/ORG/NAME``.

A Space loses its disk at every restart, and a worker on another machine cannot share a
SQLite file, so the living leaderboard can keep its state where it lasts and everyone can
read it: a dataset repo, as plain files::

    requests/req-00001.json          one request each (the fields of Request; times in Unix s)
    results/req-00001/Set5.json      the results documents (the rtsr.evaluate schema)
    submissions/req-00001/<name>/    a maintainer's local submission, copied when submitted
    registry.json                    the finished, passing submissions the app may run

**Every state change is one commit guarded by** ``parent_commit``: the head the writer read.
The Hub refuses a commit whose parent is no longer the head (HTTP 412); the writer then reads
again and decides again, so two workers never claim the same request and a worker that lost
its lease changes nothing, as with :class:`rtsr.submissions.requests.SqliteStore`. Every
change writes a request file whose content differs (a status, a time), so no commit is ever
skipped as empty (``huggingface_hub`` sends none when nothing changed, which could not be
refused). A request costs a handful of commits: submit, claim, a lease renewal every 5
minutes (:data:`~rtsr.submissions.requests.HUB_LEASE_S`), finish or fail.

The local copy is only a cache: the files are read through ``huggingface_hub``'s cache
(``$HF_HOME``) at the head commit, so a process that starts on an empty disk reads the same
queues, results and registry. The token is ``huggingface_hub``'s (``$HF_TOKEN`` or the login).
"""

from __future__ import annotations

import json
import logging
import random
import re
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from rtsr.errors import InputError, SubmissionError, first_line
from rtsr.submissions.registry import Registry, RegistryEntry
from rtsr.submissions.requests import (
    HUB_LEASE_S,
    HUB_SCHEME,
    MAX_ATTEMPTS,
    LeaseLost,
    Request,
    RequestStatus,
    Store,
    StoreError,
    check_documents,
    safe_name,
    stored_reason,
    unique_entry_id,
)

logger = logging.getLogger(__name__)

#: How many times a change is decided again after another writer's commit got in first.
COMMIT_ATTEMPTS = 30
_DATASET = re.compile(r"^hf://datasets/(?P<repo>[\w.-]+/[\w.-]+)/?$")
_REQUEST_FILE = re.compile(r"^req-(\d+)\.json$")

T = TypeVar("T")
#: The requests as read at one head (the class's own ``list`` shadows the builtin there).
Requests = list[Request]


class _Stale(Exception):
    """Another commit became the head after this writer read it (HTTP 412)."""


@dataclass(frozen=True)
class _Read:
    """The dataset as read at one commit: what a change is decided on, as a whole."""

    #: The commit; None while the dataset does not exist.
    head: str | None
    #: Its files (a snapshot in huggingface_hub's cache).
    folder: Path
    requests: Requests


class HubStore(Store):
    """The store in the dataset ``spec`` names (``hf://datasets/ORG/NAME``).

    Raises:
        InputError: ``spec`` is not a dataset's address.
    """

    lease_s = HUB_LEASE_S

    def __init__(self, spec: str, work_dir: Path | None = None) -> None:
        from huggingface_hub import HfApi, constants

        match = _DATASET.match(spec)
        if match is None:
            raise InputError(f"{spec!r}: a store on the Hub is named hf://datasets/ORG/NAME")
        self.repo_id = match["repo"]
        self.spec = f"{HUB_SCHEME}datasets/{self.repo_id}"
        self.api = HfApi()
        cache = Path(constants.HF_HOME) / "rtsr" / "stores" / self.repo_id.replace("/", "--")
        self._work_dir = work_dir or cache / "work"
        self._empty = cache / "empty"  # the files of a dataset that does not exist yet
        self._read: _Read | None = None
        #: Set while the Hub cannot be read: since when (Unix time) and why, in one line.
        self.unreachable: tuple[float, str] | None = None
        # a change is decided on one read and committed on its head: reads are not interleaved
        self._lock = threading.RLock()

    # --- where ------------------------------------------------------------------------------

    def describe(self) -> str:
        return self.spec

    def remote_copy(self) -> tuple[str, str] | None:
        head = self.head
        return (self.repo_id, head) if head is not None else None

    def where_kept(self) -> str:
        return f"in the Hub dataset `{self.repo_id}`, which outlasts the Space's restarts"

    @property
    def folder(self) -> Path:
        return self._last().folder

    @property
    def work_dir(self) -> Path:
        return self._work_dir

    @property
    def head(self) -> str | None:
        """The dataset's commit as last read; None while it does not exist."""
        return self._last().head

    def _last(self) -> _Read:
        """The last read, reading now if there is none or this store's own commit moved the
        head since.

        Raises:
            StoreError: the Hub cannot be read (one line).
        """
        with self._lock:
            if self._read is None:
                self.refresh()
            assert self._read is not None
            return self._read

    # --- reading ----------------------------------------------------------------------------

    def _hub(self, doing: str, call: Callable[[], T]) -> T:
        """``call``, with the Hub's failures as one line that names the dataset."""
        from huggingface_hub.errors import HfHubHTTPError

        try:
            return call()
        except HfHubHTTPError as e:
            status = e.response.status_code if e.response is not None else None
            if status == 412:
                raise _Stale() from None
            if status in (401, 403):
                access = "write" if doing.startswith(("write", "create")) else "read"
                raise StoreError(
                    f"{self.spec}: the Hub refused to let this token {doing} ({status}): a token that can {access}"
                    f" {self.repo_id} is needed (HF_TOKEN, or hf auth login)"
                ) from None
            raise StoreError(f"{self.spec}: the Hub failed to {doing} ({first_line(e)})") from None
        except (OSError, ValueError) as e:  # connection refused, timeouts, a broken answer
            raise StoreError(f"{self.spec}: could not reach the Hub to {doing} ({first_line(e)})") from None
        except Exception as e:  # httpx's transport errors are not OSErrors
            if e.__class__.__module__.startswith(("httpx", "huggingface_hub")):
                raise StoreError(f"{self.spec}: could not reach the Hub to {doing} ({first_line(e)})") from None
            raise

    def refresh(self) -> bool:
        """Read the dataset at its head; return whether the head moved since the last read.
        While the Hub cannot be read, :attr:`unreachable` says since when, and the last read
        stays as it was.

        Raises:
            StoreError: the Hub cannot be reached or refuses to be read (one line).
        """
        with self._lock:
            try:
                read = self._fetch(self._read)
            except StoreError as e:
                if self.unreachable is None:
                    self.unreachable = (time.time(), first_line(e))
                raise
            self.unreachable = None
            moved = self._read is None or read.head != self._read.head
            self._read = read
            return moved

    def _fetch(self, last: _Read | None) -> _Read:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import RepositoryNotFoundError

        def head() -> str | None:
            try:
                return self.api.repo_info(self.repo_id, repo_type="dataset").sha
            except RepositoryNotFoundError:
                return None

        sha = self._hub("read the dataset", head)
        if last is not None and sha == last.head:
            return last
        if sha is None:
            self._empty.mkdir(parents=True, exist_ok=True)
            folder = self._empty
        else:
            folder = Path(
                self._hub(
                    "download the dataset",
                    lambda: snapshot_download(
                        self.repo_id, repo_type="dataset", revision=sha, endpoint=self.api.endpoint
                    ),
                )
            )
        requests = []
        for path in sorted((folder / "requests").glob("req-*.json"), key=_sequence):
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                requests.append(Request(**{**data, "results": list(data.get("results") or [])}))
            except (OSError, ValueError, TypeError) as e:
                raise StoreError(f"{self.spec}: {path.name} does not read as a request ({first_line(e)})") from None
        return _Read(sha, folder, requests)

    def version(self) -> str:
        """The head, read now (one request to the Hub)."""
        self.refresh()
        return self._last().head or ""

    def get(self, request_id: str) -> Request:
        self.refresh()
        for request in self._last().requests:
            if request.id == request_id:
                return request
        raise InputError(f"no request {request_id!r} in {self.spec}")

    def list(self, status: RequestStatus | None = None, fresh: bool = True) -> Requests:
        if fresh:
            self.refresh()
        return [r for r in self._last().requests if status is None or r.status == status]

    # --- writing: one commit per change, guarded by the head it was decided on --------------

    def _change(self, decide: Callable[[_Read], tuple[dict[str, bytes], str, T]]) -> T:
        """Read the head, ``decide`` the change on that read (``{path: content}``, a commit
        message and the result), and commit it with that head as its parent; when another
        commit got in first, read again and decide again. An empty change commits nothing.

        Raises:
            StoreError: the Hub failed, refused the token, or other writers kept winning.
        """
        for attempt in range(COMMIT_ATTEMPTS):
            with self._lock:
                self.refresh()
                read = self._last()
            files, message, result = decide(read)
            if not files:
                return result
            try:
                self._commit(files, message, read.head)
            except _Stale:
                # another writer's commit is the head now: back off a little, read, decide again
                time.sleep(random.uniform(0.05, 0.3) * (1 + attempt))
                continue
            with self._lock:
                if self._read is read:
                    self._read = None  # read again on the next use: the head moved
            return result
        raise StoreError(f"{self.spec}: other writers kept committing first; {COMMIT_ATTEMPTS} attempts failed")

    def _commit(self, files: dict[str, bytes], message: str, parent: str | None) -> None:
        """Commit ``files`` on ``parent``, the head they were decided on.

        Raises:
            _Stale: ``parent`` is no longer the head (or the dataset was only just created:
                what was decided on its absence is decided again).
        """
        from huggingface_hub import CommitOperationAdd

        if parent is None:
            self._create()
            raise _Stale()
        operations = [CommitOperationAdd(path_in_repo=path, path_or_fileobj=content) for path, content in files.items()]
        self._hub(
            "write to the dataset",
            lambda: self.api.create_commit(
                self.repo_id,
                operations,
                commit_message=message,
                repo_type="dataset",
                parent_commit=parent,
            ),
        )

    def _create(self) -> None:
        """Create the dataset, private, on its first write."""
        url = self._hub(
            "create the dataset",
            lambda: self.api.create_repo(self.repo_id, repo_type="dataset", private=True, exist_ok=True),
        )
        logger.warning("created the private dataset %s for the request store (%s)", self.spec, url)

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
        copied = _files(local_folder) if local_folder is not None else {}

        def decide(read: _Read) -> tuple[dict[str, bytes], str, Request]:
            requests, now = read.requests, time.time()
            same = next(
                (
                    r
                    for r in requests
                    if (r.revision, r.track, r.repo) == (revision, track, repo) and r.status != "failed"
                ),
                None,
            )
            if same is not None:
                what = f"{repo}@{revision}" if repo else f"this submission ({revision})"
                raise SubmissionError(
                    f"{what} is already submitted for Track {track}: request {same.id} ({same.status})"
                )
            if daily_limit is not None:
                count = sum(1 for r in requests if r.submitter == submitter and r.submitted > now - 86400)
                if count >= daily_limit:
                    raise SubmissionError(
                        f"{submitter} has made {count} requests in the last 24 hours, the limit is {daily_limit}:"
                        " try again tomorrow"
                    )
            request_id = f"req-{max((_sequence(r.id) for r in requests), default=0) + 1:05d}"
            files = {}
            stored_spec = spec
            if local_folder is not None:
                stored_spec = f"submissions/{request_id}/{safe_name(local_name or local_folder.name)}"
                files = {f"{stored_spec}/{path}": content for path, content in copied.items()}
            request = Request(request_id, stored_spec, repo, revision, track, submitter, "pending", "", now)
            return {**files, **_request_file(request)}, f"submit {request_id}: {stored_spec}", request

        return self._change(decide)

    def claim(self, worker: str, lease_s: float | None = None) -> Request | None:
        lease = lease_s or self.lease_s

        def decide(read: _Read) -> tuple[dict[str, bytes], str, Request | None]:
            requests, now = read.requests, time.time()
            files: dict[str, bytes] = {}
            changed = {}
            for r in requests:
                if r.status == "running" and r.lease_until is not None and r.lease_until < now:
                    if r.attempts >= MAX_ATTEMPTS:
                        reason = f"its worker stopped while evaluating it {r.attempts} times; not retried"
                        r = replace(r, status="failed", finished=now, worker=None, lease_until=None, reason=reason)
                    else:
                        r = replace(r, status="pending", worker=None, lease_until=None, started=None)
                    changed[r.id] = r
            current = [changed.get(r.id, r) for r in requests]
            pending = next((r for r in current if r.status == "pending"), None)
            claimed = None
            if pending is not None:
                claimed = replace(
                    pending,
                    status="running",
                    worker=worker,
                    started=now,
                    lease_until=now + lease,
                    attempts=pending.attempts + 1,
                    reason="",
                )
                changed[claimed.id] = claimed
            for r in changed.values():
                files.update(_request_file(r))
            message = f"claim {claimed.id} for {worker}" if claimed else "return requests whose workers stopped"
            return files, message, claimed

        return self._change(decide)

    def _owned(self, requests: Requests, request_id: str, worker: str) -> Request:
        for r in requests:
            if r.id == request_id and r.status == "running" and r.worker == worker:
                return r
        raise LeaseLost(f"{request_id}: no longer held by worker {worker} (its lease expired)")

    def renew(self, request_id: str, worker: str, lease_s: float | None = None) -> None:
        def decide(read: _Read) -> tuple[dict[str, bytes], str, None]:
            held = self._owned(read.requests, request_id, worker)
            renewed = replace(held, lease_until=time.time() + (lease_s or self.lease_s))
            return _request_file(renewed), f"renew {request_id}'s lease for {worker}", None

        self._change(decide)

    def fail(self, request_id: str, worker: str, reason: str) -> None:
        text = stored_reason(reason)

        def decide(read: _Read) -> tuple[dict[str, bytes], str, None]:
            held = self._owned(read.requests, request_id, worker)
            failed = replace(held, status="failed", reason=text, finished=time.time(), lease_until=None)
            return _request_file(failed), f"fail {request_id}", None

        self._change(decide)

    def finish(
        self,
        request_id: str,
        worker: str,
        documents: dict[str, dict[str, Any]],
        entry: RegistryEntry,
        device: str,
    ) -> Request:
        from rtsr.results.schema import write_evaluation

        check_documents(request_id, documents)

        def decide(read: _Read) -> tuple[dict[str, bytes], str, Request]:
            held = self._owned(read.requests, request_id, worker)
            registry = Registry.read(read.folder / "registry.json")
            entry_id = unique_entry_id(registry, entry, request_id)
            files, paths = {}, []
            with tempfile.TemporaryDirectory(prefix="rtsr-finish-") as tmp:
                for name, document in documents.items():
                    # the documents name the model as it is served
                    served = {**document, "model": {**document["model"], "id": entry_id}}
                    path = f"results/{request_id}/{safe_name(name)}.json"
                    write_evaluation(served, Path(tmp) / path)
                    files[path] = (Path(tmp) / path).read_bytes()
                    paths.append(path)
                registry.add(RegistryEntry(**{**asdict(entry), "id": entry_id}))
                registry.path = Path(tmp) / "registry.json"
                registry.write()
                files["registry.json"] = registry.path.read_bytes()
            finished = replace(
                held, status="finished", finished=time.time(), lease_until=None, device=device,
                entry_id=entry_id, results=paths,
            )  # fmt: skip
            files.update(_request_file(finished))
            return files, f"finish {request_id}: served as {entry_id}", finished

        return self._change(decide)


def _sequence(item: str | Path) -> int:
    """A request's number, from its id or its file's name."""
    name = item.name if isinstance(item, Path) else f"{item}.json"
    match = _REQUEST_FILE.match(name)
    return int(match[1]) if match else 0


def _request_file(request: Request) -> dict[str, bytes]:
    return {f"requests/{request.id}.json": (json.dumps(asdict(request), indent=2) + "\n").encode()}


def _files(folder: Path) -> dict[str, bytes]:
    """A local submission's files by their path in it. Links (only ones within the folder:
    ``submit`` refuses others) are stored as the files they point at: a dataset has no links."""
    files = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            files[path.relative_to(folder).as_posix()] = path.read_bytes()
    return files
