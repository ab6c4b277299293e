"""The request store in a Hub dataset, through the real ``huggingface_hub`` client against the
stand-in (tests/hub_standin.py): what the Hub's own protocol brings that a folder does not
(commits that race, tokens, a Hub that is down, a disk that starts empty)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rtsr.submissions.hub_store import HubStore
from rtsr.submissions.registry import RegistryEntry
from rtsr.submissions.requests import LeaseLost, StoreError, submit
from tests.hub_standin import READ_TOKEN, HubStandIn
from tests.support.data import ROOT
from tests.support.submissions import make_submission

DATASET = "hf://datasets/lab/rtsr-store"
REPO = ("dataset", "lab/rtsr-store")


def _document() -> dict:
    return json.loads((ROOT / "leaderboard" / "evaluations" / "rtsrn-x2_Set5.json").read_text())


def _rtsr(hub: HubStandIn, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m rtsr ARGS`` on the stand-in's dataset, signed in, with ``home`` as its
    ``$HF_HOME`` (a disk of its own)."""
    return subprocess.run(
        [sys.executable, "-m", "rtsr", *args],
        cwd=ROOT,
        env={**os.environ, **hub.env(), "HF_HOME": str(home), "RTSR_STORE": DATASET},
        capture_output=True,
        text=True,
        timeout=600,
    )


def _finished_after_its_lease(hub: HubStandIn, store: HubStore, request_id: str, home: Path) -> None:
    """Wait until the request's lease has run out, then check that a worker on a disk of its
    own takes it over and finishes it."""
    from tests.test_worker import FAST

    time.sleep(max(0.0, (store.get(request_id).lease_until or 0) - time.time()) + 0.5)
    result = _rtsr(hub, home, "worker", "--once", *FAST)
    assert f"{request_id}: finished" in result.stdout, result.stderr
    done = store.get(request_id)
    assert (done.status, done.attempts) == ("finished", 2)


def test_the_dataset_is_created_private_on_the_first_write_and_each_change_is_a_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with HubStandIn() as hub:
        hub.use_in_this_process(tmp_path / "hf", monkeypatch)
        store = HubStore(DATASET)
        # reading a dataset that does not exist yet is an empty store, and writes nothing
        assert store.list() == [] and REPO not in hub.repos
        with caplog.at_level(logging.WARNING, logger="rtsr.submissions.hub_store"):
            request = submit(store, str(make_submission(tmp_path / "tiny")), 1, "alice")
        assert [r.getMessage() for r in caplog.records] == [
            f"created the private dataset {DATASET} for the request store ({hub.url}/datasets/lab/rtsr-store)"
        ]
        assert hub.repos[REPO].private
        claimed = store.claim("w1")
        assert claimed is not None and claimed.id == request.id
        store.renew(request.id, "w1")
        entry = RegistryEntry("tiny", "Tiny", "T", 2, 1, request.spec, None, {})
        store.finish(request.id, "w1", {"Set5": _document()}, entry, "cpu")
        # every state change is its own commit, in order, on the Hub's first commit
        assert [c.title for c in hub.repos[REPO].commits] == [
            "initial commit",
            "submit req-00001: submissions/req-00001/tiny",
            "claim req-00001 for w1",
            "renew req-00001's lease for w1",
            "finish req-00001: served as tiny",
        ]
        # plain files that anyone with access can read
        files = hub.repos[REPO].head.files
        assert json.loads(files["requests/req-00001.json"])["status"] == "finished"
        assert json.loads(files["registry.json"])["entries"][0]["id"] == "tiny"
        assert json.loads(files["results/req-00001/Set5.json"])["model"]["id"] == "tiny"
        assert files["submissions/req-00001/tiny/arch.py"] == (tmp_path / "tiny" / "arch.py").read_bytes()


def test_a_writer_whose_head_went_stale_reads_again_and_decides_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two stores read the same head; the second to commit gets 412 from the Hub, reads the
    first one's commit and decides again: its claim takes the next request, and a finish by a
    worker whose request was taken over changes nothing."""
    with HubStandIn() as hub:
        hub.use_in_this_process(tmp_path / "hf", monkeypatch)
        one, two = HubStore(DATASET), HubStore(DATASET)
        first = submit(one, str(make_submission(tmp_path / "a", files={"v.py": "V = 1\n"})), 1, "alice")
        second = submit(one, str(make_submission(tmp_path / "b", files={"v.py": "V = 2\n"})), 1, "alice")
        two.refresh()
        one_claim = one.claim("w1")
        # two's head is stale: its commit is refused, it reads again and takes the other request
        before = len(hub.requests)
        two_claim = two.claim("w2")
        assert one_claim is not None and two_claim is not None
        assert (one_claim.id, two_claim.id) == (first.id, second.id)
        assert any(r.startswith("POST /api/datasets/lab/rtsr-store/commit/") for r in hub.requests[before:])
        assert two.claim("w3") is None
        # w1's lease runs out; w3 takes the request over; w1 can no longer finish or fail it
        one.renew(first.id, "w1", lease_s=0.01)
        time.sleep(0.05)
        taken = two.claim("w3")
        assert taken is not None and (taken.id, taken.worker, taken.attempts) == (first.id, "w3", 2)
        entry = RegistryEntry("a", "A", "T", 2, 1, first.spec, None, {})
        with pytest.raises(LeaseLost, match="no longer held by worker w1"):
            one.finish(first.id, "w1", {"Set5": _document()}, entry, "cpu")
        with pytest.raises(LeaseLost):
            one.renew(first.id, "w1")
        assert one.get(first.id).worker == "w3" and not (one.folder / "results").exists()


CLAIMER = """
import json, sys
from rtsr.submissions.stores import open_store
store, claimed = open_store(sys.argv[1]), []
while (request := store.claim(sys.argv[2])) is not None:
    claimed.append(request.id)
print(json.dumps(claimed))
"""


def test_four_worker_processes_each_with_its_own_cache_never_claim_the_same_request(tmp_path: Path) -> None:
    total = 16
    with HubStandIn() as hub:
        repo = hub.create(*REPO)
        pending = {
            f"requests/req-{i:05d}.json": json.dumps(
                {"id": f"req-{i:05d}", "spec": "x", "repo": None, "revision": f"sha256:{i}", "track": 1,
                 "submitter": "t", "status": "pending", "reason": "", "submitted": time.time()}
            ).encode()
            for i in range(1, total + 1)
        }  # fmt: skip
        repo.commit("queue", {**repo.head.files, **pending})
        processes = [
            subprocess.Popen(
                [sys.executable, "-c", CLAIMER, DATASET, f"w{i}"],
                cwd=ROOT,
                env={**os.environ, **hub.env(), "HF_HOME": str(tmp_path / f"hf{i}")},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for i in range(4)
        ]
        outputs = [p.communicate(timeout=300) for p in processes]
        for (_, err), p in zip(outputs, processes, strict=True):
            assert p.returncode == 0, err
        claims = [json.loads(out) for out, _ in outputs]
        everything = [c for claimed in claims for c in claimed]
        assert sorted(everything) == sorted(f"req-{i:05d}" for i in range(1, total + 1))
        # one commit per claim, none lost: the stale ones were refused, not merged
        assert sum(c.title.startswith("claim ") for c in hub.repos[REPO].commits) == total
        states = [json.loads(hub.repos[REPO].head.files[path]) for path in pending]
        assert {s["status"] for s in states} == {"running"} and all(s["attempts"] == 1 for s in states)


def test_a_token_that_cannot_write_and_a_hub_that_is_down_are_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = make_submission(tmp_path / "tiny")
    with HubStandIn() as hub:
        hub.create(*REPO)
        hub.use_in_this_process(tmp_path / "hf", monkeypatch, token=READ_TOKEN)
        store = HubStore(DATASET)
        assert store.list() == []  # it may read
        with pytest.raises(StoreError) as refused:
            submit(store, str(folder), 1, "alice")
        assert str(refused.value) == (
            f"{DATASET}: the Hub refused to let this token write to the dataset (403): a token that can write"
            " lab/rtsr-store is needed (HF_TOKEN, or hf auth login)"
        )
        url = hub.url
    # the Hub gone: one line for the library, and for the CLI an exit status of 1
    with pytest.raises(StoreError, match=rf"^{DATASET}: could not reach the Hub to read the dataset \(.+\)$"):
        store.list()
    env = {**os.environ, "HF_ENDPOINT": url, "HF_HUB_OFFLINE": "0", "HF_HOME": str(tmp_path / "hf2")}
    for command in (("requests",), ("submit", str(folder))):
        result = subprocess.run(
            [sys.executable, "-m", "rtsr", *command, "--store", DATASET],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 1, result
        assert result.stderr.startswith(f"rtsr {command[0]}: error: {DATASET}: could not reach the Hub to read"), (
            result.stderr
        )
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_the_cli_on_the_hub_store_and_a_fresh_disk_reads_the_same_state(tmp_path: Path) -> None:
    """``rtsr submit`` and ``rtsr requests`` with ``--store hf://datasets/...``, from processes
    whose ``$HF_HOME`` starts empty each time: the dataset is the state, the disk a cache."""
    with HubStandIn() as hub:

        def rtsr(*args: str, home: str) -> subprocess.CompletedProcess[str]:
            return _rtsr(hub, tmp_path / home, *args)

        submitted = rtsr("submit", "submissions/rtsrn_x2", "--submitter", "alice", home="a")
        assert submitted.returncode == 0, submitted.stderr
        assert submitted.stdout == (
            "req-00001: submissions/rtsrn_x2 (copied as submissions/req-00001/rtsrn_x2), Track 1,"
            f" pending in {DATASET}\n"
        )
        assert f"created the private dataset {DATASET}" in submitted.stderr
        listed = rtsr("requests", "--json", home="b")
        assert listed.returncode == 0, listed.stderr
        (request,) = json.loads(listed.stdout)
        assert (request["id"], request["status"], request["submitter"]) == ("req-00001", "pending", "alice")
        again = rtsr("submit", "submissions/rtsrn_x2", home="c")
        assert again.returncode == 1
        assert again.stderr.strip().endswith("is already submitted for Track 1: request req-00001 (pending)")


def test_four_workers_with_their_own_caches_evaluate_each_request_once_and_a_fresh_disk_sees_them(
    tmp_path: Path,
) -> None:
    """The issue's whole path with ``RTSR_STORE=hf://datasets/lab/rtsr-store``: two requests
    submitted, four ``rtsr worker --once`` with separate ``$HF_HOME``s, and ``rtsr requests``
    from a fifth disk."""
    from tests.test_worker import BUNDLED, FAST, _copy

    with HubStandIn() as hub:

        def rtsr(*args: str, home: str) -> subprocess.Popen[str]:
            return subprocess.Popen(
                [sys.executable, "-m", "rtsr", *args],
                cwd=ROOT,
                env={**os.environ, **hub.env(), "HF_HOME": str(tmp_path / home), "RTSR_STORE": DATASET},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )

        for folder in (BUNDLED, _copy(tmp_path, "second_x2", note="2")):
            submitted = rtsr("submit", str(folder), "--submitter", "maintainer", home="submitter")
            assert submitted.wait(timeout=120) == 0, submitted.communicate()
        workers = [rtsr("-q", "worker", "--once", *FAST, home=f"worker{i}") for i in range(4)]
        outputs = [w.communicate(timeout=900) for w in workers]
        assert [w.returncode for w in workers] == [0, 0, 0, 0], outputs
        finished = [line for out, _ in outputs for line in out.splitlines() if ": finished, served as " in line]
        assert sorted(finished) == [
            "req-00001: finished, served as rtsrn_x2",
            "req-00002: finished, served as second_x2",
        ], outputs
        listed = rtsr("requests", "--json", home="reader")
        out, err = listed.communicate(timeout=120)
        assert listed.returncode == 0, err
        requests = json.loads(out)
        assert [(r["id"], r["status"], r["attempts"], r["results"]) for r in requests] == [
            ("req-00001", "finished", 1, ["results/req-00001/Set5.json"]),
            ("req-00002", "finished", 1, ["results/req-00002/Set5.json"]),
        ]
        # each state change is its own commit; the other workers' looks at the queue wrote nothing
        titles = [c.title for c in hub.repos[REPO].commits]
        assert titles[:3] == [
            "initial commit",
            "submit req-00001: submissions/req-00001/rtsrn_x2",
            "submit req-00002: submissions/req-00002/second_x2",
        ]
        assert sorted(t.split(" for ")[0] for t in titles[3:]) == [
            "claim req-00001",
            "claim req-00002",
            "finish req-00001: served as rtsrn_x2",
            "finish req-00002: served as second_x2",
        ]
        files = hub.repos[REPO].head.files
        document = json.loads(files["results/req-00001/Set5.json"])
        assert document["model"]["id"] == "rtsrn_x2" and document["runtime"]["check"]["by"] == "worker"
        entries = json.loads(files["registry.json"])["entries"]
        assert sorted((e["id"], e["source"]) for e in entries) == [
            ("rtsrn_x2", "submissions/req-00001/rtsrn_x2"),
            ("second_x2", "submissions/req-00002/second_x2"),
        ]


def _finished_on_the_hub() -> None:
    """The bundled RTSRN x2 as a finished request in the dataset of the stand-in this process
    uses, with its document and registry entry, as a worker leaves it (without the minute
    of evaluation)."""
    from rtsr.submissions.registry import entry_for
    from rtsr.submissions.submission import open_submission
    from tests.test_worker import BUNDLED

    store = HubStore(DATASET)
    request = submit(store, str(BUNDLED), 1, "maintainer")
    assert store.claim("w1") is not None
    folder = store.folder
    entry = entry_for(open_submission(folder / request.spec), folder, "rtsrn_x2")
    store.finish(request.id, "w1", {"Set5": _document()}, entry, "cpu")


def test_the_app_on_an_empty_disk_serves_the_board_and_models_of_the_dataset_and_outlives_the_hub(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.support.app import RunningApp
    from tests.test_app import EXAMPLES, call_upscale, request, uploaded_file

    with HubStandIn() as hub:
        hub.use_in_this_process(tmp_path / "writer", monkeypatch)
        _finished_on_the_hub()
        env = {**hub.env(), "RTSR_STORE": DATASET, "HF_HOME": str(tmp_path / "app-hf")}
        running = RunningApp(env=env, log=tmp_path / "app.log").wait_ready()
        try:
            status, config = request(running, "config")
            assert status == 200
            assert b"rtsrn_x2" in config  # the evaluated model, served, and its row on the board
            assert b"kept in the Hub dataset `lab/rtsr-store`, which outlasts the Space's restarts" in config
            image = uploaded_file(running, EXAMPLES / "chelsea.png")
            kind, outputs = call_upscale(running, image, model_id="rtsrn_x2")
            assert kind == "complete" and outputs[3]["input_size"] == [150, 225], outputs
            hub.stop()
            # the Hub gone: the app keeps serving what it read, the evaluated model included
            kind, outputs = call_upscale(running, image, model_id="rtsrn_x2")
            assert kind == "complete", outputs
        finally:
            running.stop()
    log = (tmp_path / "app.log").read_text()
    assert f"request store: {DATASET}" in log and "Traceback" not in log
    assert not (tmp_path / "store").exists()  # no local store beside it


def test_while_the_hub_is_down_the_page_keeps_the_last_state_and_says_since_when(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from space.submit import queue_version, queues, store_note

    with HubStandIn() as hub:
        hub.use_in_this_process(tmp_path / "hf", monkeypatch)
        store = HubStore(DATASET)
        submit(store, str(make_submission(tmp_path / "tiny")), 1, "alice")
        version = queue_version(store)
        assert version == hub.repos[REPO].head.oid
        assert store_note(store) == "" and len(queues(store)["pending"]) == 1
        hub.stop()
        before = time.time()
        # the page's one look per poll finds the Hub gone: the token changes, so pages redraw...
        assert queue_version(store).startswith(f"unreadable: {DATASET}: could not reach the Hub")
        after = time.time()
        # ...with the queues as last read, and a line that says since when
        assert len(queues(store)["pending"]) == 1
        note = store_note(store)
        assert note in {
            f"⚠️ **The Hub has not answered since {time.strftime('%H:%M UTC', time.gmtime(t))}**: the requests,"
            " the board and the models show the state of then, and requests cannot be made until it is back."
            for t in (before, after)
        }, note
        assert store.results_dir.parent == store.folder  # the files as last read, no Hub needed


CARD = """---
license: apache-2.0
tags:
- super-resolution
---

# Bob's RTSRN
"""


def test_the_worker_offers_the_results_to_the_participants_repo_as_a_pull_request(tmp_path: Path) -> None:
    """``rtsr worker --offer-results``: a passing Hub repo gets a pull request that adds the
    results to its card's ``model-index`` (parsed back here with huggingface_hub's own
    ``ModelCard``); a repo with discussions closed refuses it, which is one line in the log,
    and its request finishes all the same."""
    from huggingface_hub import ModelCard

    from tests.test_worker import BUNDLED, FAST

    files = {p.name: p.read_bytes() for p in BUNDLED.iterdir() if p.name in ("arch.py", "model.safetensors")}
    meta = {**json.loads((BUNDLED / "submission.json").read_text()), "team": "Bob's Team", "method": "Bob's RTSRN"}
    files |= {"submission.json": json.dumps(meta).encode(), "README.md": CARD.encode()}
    with HubStandIn() as hub:
        for name in ("bob/rtsrn-x2", "bob/closed-x2"):
            repo = hub.create("model", name, private=False)
            repo.commit("upload", {**repo.head.files, **files})
        hub.repos["model", "bob/closed-x2"].discussions = False

        def rtsr(*args: str, home: str) -> subprocess.CompletedProcess[str]:
            return _rtsr(hub, tmp_path / home, *args)

        for name in ("bob/rtsrn-x2", "bob/closed-x2"):
            assert rtsr("submit", name, "--submitter", "bob", home="bob").returncode == 0
        board = "https://huggingface.co/spaces/lab/rtsr"
        worker = rtsr("worker", "--once", "--offer-results", "--board-url", board, *FAST, home="worker")
        assert worker.returncode == 0, worker.stderr
        assert "req-00001: finished" in worker.stdout and "req-00002: finished" in worker.stdout
        # the open repo: one pull request, on top of its main, that adds the results to its card
        (pull,) = hub.repos["model", "bob/rtsrn-x2"].pulls
        assert pull.title == "Add the rtsr leaderboard's results (request req-00001)"
        commit = hub.repos["model", "bob/rtsrn-x2"].commits[-1].oid
        assert f"at commit {commit} (request req-00001)" in pull.description and f"]({board})" in pull.description
        card = ModelCard(pull.commit.files["README.md"].decode())
        assert card.data.license == "apache-2.0" and card.text.strip() == "# Bob's RTSRN"  # kept as it was
        results = {r.metric_type: r for r in card.data.eval_results}
        document = json.loads(hub.repos[REPO].head.files["results/req-00001/Set5.json"])
        assert results["psnr_rgb"].metric_value == pytest.approx(document["metrics"]["mean"]["psnr_rgb"])
        assert results["psnr_rgb"].dataset_name == "Set5" and card.data.model_name == "Bob's RTSRN"
        assert hub.repos["model", "bob/rtsrn-x2"].head.files["README.md"] == CARD.encode()  # main untouched
        # the closed repo: refused, in one line, and its request finished
        assert hub.repos["model", "bob/closed-x2"].pulls == []
        refusals = [line for line in worker.stderr.splitlines() if "results not offered" in line]
        assert len(refusals) == 1 and refusals[0].startswith(
            "WARNING rtsr.submissions.worker: req-00002: results not offered to bob/closed-x2: "
        ), worker.stderr
        assert "Discussions are disabled" in refusals[0] and "Traceback" not in worker.stderr


def test_a_job_evaluates_a_local_submission_from_its_copy_in_the_dataset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On Jobs, a maintainer's local submission travels through the store: the job fetches its
    copy from the dataset at the commit the worker read, with the read-only token it is given,
    checks it is the submission requested, and evaluates it."""
    from rtsr.submissions.backends import HfJobsBackend
    from rtsr.submissions.worker import Worker
    from tests.test_worker import BUNDLED, FAST_SETTINGS, LocalJobs

    with HubStandIn() as hub:
        hub.use_in_this_process(tmp_path / "worker", monkeypatch)
        store = HubStore(DATASET)
        request = submit(store, str(BUNDLED), 1, "maintainer")
        # the job: another machine (its own empty cache), with a read-only token for the store
        jobs = LocalJobs(tmp_path, {**os.environ, **hub.env(token=None), "HF_HOME": str(tmp_path / "job")})
        backend = HfJobsBackend(
            jobs, image="hf.co/spaces/lab/rtsr", settings=FAST_SETTINGS, test_set_token=READ_TOKEN, poll_s=0.2
        )
        (done,) = Worker(store, backend).run(once=True)
        assert (done.id, done.status, done.entry_id) == (request.id, "finished", "rtsrn_x2"), done.reason
        (process, log, spec) = jobs.jobs["job1"]
        payload = json.loads(spec["command"][3])
        assert payload["copy"] == {
            "dataset": "lab/rtsr-store",
            "commit": payload["copy"]["commit"],
            "folder": "submissions/req-00001/rtsrn_x2",
            "pin": request.revision,
        }
        assert hub.repos[REPO].at(payload["copy"]["commit"]) is not None
        assert process.returncode == 0 and READ_TOKEN not in log.read_text()
        document = json.loads(hub.repos[REPO].head.files["results/req-00001/Set5.json"])
        assert document["runtime"]["check"]["size_by"] == "exported graph"


def test_a_worker_killed_or_cut_off_mid_evaluation_leaves_nothing_half_written_and_another_finishes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker renews its lease with commits of their own; the Hub goes away while it
    evaluates, and comes back: the worker says so in lines, not tracebacks, and the dataset
    holds the claim and nothing of a result. The worker is then killed (SIGKILL): nobody takes
    the request before its lease runs out, then a worker on another disk finishes it."""
    import signal

    from tests.test_worker import BUNDLED, _wait_for

    with HubStandIn() as hub:
        hub.use_in_this_process(tmp_path / "hf", monkeypatch)
        store = HubStore(DATASET)
        request = submit(store, str(BUNDLED), 1, "alice")
        env = {**os.environ, **hub.env(), "RTSR_STORE": DATASET, "HF_HOME": str(tmp_path / "first")}
        log = tmp_path / "worker.log"
        with log.open("w") as out:
            worker = subprocess.Popen(
                [
                    *(sys.executable, "-m", "rtsr", "-q", "worker", "--lease", "6", "--poll", "0.5"),
                    *("--crop-size", "258", "258", "--warmup", "1", "--repeat", "300"),
                ],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            _wait_for(lambda: store.get(request.id).status == "running", 120, "the claim")
            renewed = lambda: any(c.title.startswith("renew ") for c in hub.repos[REPO].commits)  # noqa: E731
            _wait_for(renewed, 60, "a lease renewal")
            hub.stop()
            time.sleep(8)  # past the lease: renewals fail meanwhile
            hub.restart()
            # nothing half-written: the claim is there, no result, no registry entry
            files = hub.repos[REPO].head.files
            state = json.loads(files["requests/req-00001.json"])
            assert (state["status"], state["attempts"]) == ("running", 1)
            assert not any(p.startswith("results/") for p in files) and "registry.json" not in files
        finally:
            worker.send_signal(signal.SIGKILL)
            worker.wait()
        text = log.read_text()
        assert f"{request.id}: the lease could not be renewed: {DATASET}: could not reach the Hub" in text
        assert "Traceback" not in text
        held = store.get(request.id)
        if held.lease_until is not None and held.lease_until > time.time() + 0.5:
            assert store.claim("too-early") is None  # the lease still holds it
        _finished_after_its_lease(hub, store, request.id, tmp_path / "second")
