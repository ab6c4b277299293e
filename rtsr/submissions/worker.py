"""The evaluator's loop: claim pending requests, evaluate each submission in a backend
(:mod:`rtsr.submissions.backends`), record the results.

A passing submission is added to the store's registry, pinned and hashed, so the app can run
it; a failing one gets its reason. Workers on several machines share one store: a claim is
atomic, and a lease renewed by a heartbeat returns a dead worker's request to the queue.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rtsr.errors import RTSRError, SubmissionError, first_line, printable
from rtsr.submissions.backends import Backend, entry_id, entry_name
from rtsr.submissions.evaluating import at_track_scale
from rtsr.submissions.registry import RegistryEntry, entry_for, reserved
from rtsr.submissions.requests import LeaseLost, Request, Store, StoreError
from rtsr.submissions.submission import Submission, open_submission

logger = logging.getLogger(__name__)


def open_request(request: Request, folder: Path) -> Submission:
    """The request's files: the Hub repo at its commit, or the copy in the store's ``folder``."""
    if request.is_hub:
        return open_submission(request.spec)
    return open_submission(folder / request.spec)


@contextlib.contextmanager
def _heartbeat(store: Store, request: Request, worker: str, lease_s: float) -> Iterator[Callable[[], None]]:
    """Renew the lease every ``lease_s / 3`` seconds while the body runs; yields a function
    that raises :class:`LeaseLost` if a renewal found the request taken away."""
    stop = threading.Event()
    lost: list[LeaseLost] = []

    def renew() -> None:
        while not stop.wait(lease_s / 3):
            try:
                store.renew(request.id, worker, lease_s)
            except LeaseLost as e:
                lost.append(e)
                return
            except StoreError as e:
                # the store unreachable for now (the Hub down): try again at the next beat; if
                # it stays away past the lease, the request goes to another worker
                logger.warning("%s: the lease could not be renewed: %s", request.id, first_line(e))

    def check() -> None:
        if lost:
            raise lost[0]

    thread = threading.Thread(target=renew, name=f"lease-{request.id}", daemon=True)
    thread.start()
    try:
        yield check
    finally:
        stop.set()
        thread.join()


@dataclass(frozen=True)
class Offer:
    """After a passing evaluation of a Hub repo, open a pull request on it that adds the
    results to its card (:func:`rtsr.submissions.hub.offer_results`), linking ``board_url``."""

    board_url: str | None = None


class Worker:
    """Claims requests from ``store`` and evaluates them with ``backend``."""

    def __init__(
        self,
        store: Store,
        backend: Backend,
        name: str | None = None,
        lease_s: float | None = None,
        offer: Offer | None = None,
    ) -> None:
        self.store, self.backend, self.lease_s = store, backend, lease_s or store.lease_s
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.offer = offer

    def process(self, request: Request) -> Request:
        """Evaluate one claimed request and record its outcome; return it as stored.

        Raises:
            LeaseLost: the request was taken away (this worker was presumed dead).
        """
        started = time.monotonic()
        with _heartbeat(self.store, request, self.name, self.lease_s) as keepalive:
            try:
                # one read of the store's files for both: a Hub store's folder is the head's
                # snapshot, which moves with every renewal of the lease
                folder = self.store.folder
                submission = open_request(request, folder)
                entry = self._entry(request, submission, folder)
                evaluation = self.backend.evaluate(request, submission, self.store, keepalive)
                keepalive()
            except LeaseLost:
                raise
            except RTSRError as e:
                reason = first_line(e, 600)
                logger.warning("%s failed: %s", request.id, reason)
                self.store.fail(request.id, self.name, reason)
                return self.store.get(request.id)
            except Exception as e:  # a fault of the worker's, not the submission's: keep serving
                logger.exception("%s: internal error", request.id)
                self.store.fail(
                    request.id, self.name, f"internal error in the worker ({e.__class__.__name__}); not retried"
                )
                return self.store.get(request.id)
            done = self.store.finish(request.id, self.name, evaluation.documents, entry, evaluation.device)
        logger.info("%s finished in %.0f s: served as %s", request.id, time.monotonic() - started, done.entry_id)
        if self.offer is not None and request.repo is not None:
            self._offer(request, request.repo, evaluation.documents)
        return done

    def _offer(self, request: Request, repo: str, documents: dict[str, dict[str, Any]]) -> None:
        """Offer the results to the participant's repo as a pull request; a repo that refuses
        it (discussions closed, no permission) is one line in the log, and the request stays
        finished."""
        from rtsr.submissions.hub import offer_results

        assert self.offer is not None
        try:
            url = offer_results(repo, request.revision, documents, request.id, self.offer.board_url)
        except Exception as e:  # the Hub's refusal, whatever its kind: never the request's failure
            logger.warning("%s: results not offered to %s: %s", request.id, repo, first_line(e))
        else:
            logger.info("%s: results offered to %s as a pull request: %s", request.id, repo, url)

    def _entry(self, request: Request, submission: Submission, folder: Path) -> RegistryEntry:
        """The registry entry a passing ``submission`` will be served as, a local one relative
        to the store's ``folder`` it was opened from.

        Raises:
            SubmissionError: it is not of the track's scale, or a participant's (a Hub repo)
                names the bundled models' team (a local folder is the maintainer's own, who
                may queue the bundled models themselves).
        """
        submission = at_track_scale(submission, request.track)
        if request.is_hub and submission.meta.team.strip().casefold() in reserved()[1]:
            raise SubmissionError(
                f"its submission.json names the team {submission.meta.team.strip()!r}, which is the bundled"
                " models': name your own team"
            )
        entry = entry_for(submission, folder, entry_id(request, submission))
        return replace(entry, name=entry_name(request, submission))

    def run(self, once: bool = False, poll_s: float = 5.0, stop: threading.Event | None = None) -> list[Request]:
        """Claim and process requests until ``stop`` is set; with ``once``, until none is
        pending. Returns the requests this call processed."""
        stop = stop or threading.Event()
        done: list[Request] = []
        while not stop.is_set():
            try:
                request = self.store.claim(self.name, self.lease_s)
            except StoreError as e:
                # the maintainer's problem (a corrupt database, a full disk): said once a poll,
                # and no request is failed for it
                if once:
                    raise
                logger.warning("%s", e)
                stop.wait(poll_s)
                continue
            if request is None:
                if once:
                    break
                stop.wait(poll_s)
                continue
            logger.info("%s claimed: %s (Track %d)", request.id, printable(request.repo or request.spec), request.track)
            try:
                done.append(self.process(request))
            except LeaseLost as e:
                logger.warning("%s", e)
            except StoreError as e:
                # its results could not be recorded: nothing of them is left, and its lease
                # returns the request to pending for another try
                logger.warning("%s", e)
                if once:
                    raise
        return done


def run_workers(
    store: Store,
    backend: Backend,
    count: int,
    once: bool,
    poll_s: float,
    stop: threading.Event | None = None,
    lease_s: float | None = None,
    offer: Offer | None = None,
) -> list[Request]:
    """``count`` workers in threads of this process (for jobs, which mostly wait)."""
    if count == 1:
        return Worker(store, backend, lease_s=lease_s, offer=offer).run(once, poll_s, stop)
    results: list[list[Request]] = [[] for _ in range(count)]
    threads = [
        threading.Thread(
            target=lambda i=i: results[i].extend(
                Worker(store, backend, f"{socket.gethostname()}:{os.getpid()}:{i}", lease_s, offer).run(
                    once, poll_s, stop
                )
            ),
            name=f"worker-{i}",
        )
        for i in range(count)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [r for rs in results for r in rs]
