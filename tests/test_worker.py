"""The evaluator, end to end: real submissions through the real CLI (submit, worker,
requests), two workers racing on one store, a worker killed mid-evaluation, and the
``hf-jobs`` backend against a stand-in for the Jobs API that runs each job's command for
real in a local process."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from huggingface_hub import JobInfo

from rtsr.submissions.backends import HfJobsBackend
from rtsr.submissions.evaluating import EvaluationSettings, TestSet
from rtsr.submissions.requests import SqliteStore, submit
from rtsr.submissions.worker import Worker
from tests.support.cli import run_cli
from tests.support.data import ROOT
from tests.support.submissions import populate_hub_cache
from tests.test_runtime import MACS_PER_PIXEL_X2

BUNDLED = ROOT / "submissions" / "rtsrn_x2"
#: The runtime protocol, shrunk to what a 2-core CI machine does in seconds.
FAST = ("--crop-size", "66", "66", "--warmup", "1", "--repeat", "3")
#: The same, as the settings a backend is given (the bundled Set5, the default test set).
FAST_SETTINGS = EvaluationSettings(device="cpu", target_size=(66, 66), warmup=1, repeat=3)
REVISION = "89abcdef0123456789abcdef0123456789abcdef"


def _copy(tmp_path: Path, name: str, note: str | None = None) -> Path:
    folder = tmp_path / name
    shutil.copytree(BUNDLED, folder)
    if note:  # a different submission: one more code file
        (folder / "note.py").write_text(f"NOTE = {note!r}\n")
    return folder


def _broken(tmp_path: Path) -> Path:
    folder = _copy(tmp_path, "broken_x2")
    arch = folder / "arch.py"
    arch.write_text(arch.read_text().replace("    return model\n", "    return model.to(device)\n"))
    return folder


def _requests(store: Path) -> dict[str, dict[str, Any]]:
    result = run_cli("requests", "--json", "--store", store, check=True)
    return {r["spec"].split("/")[-1]: r for r in json.loads(result.stdout)}


def test_the_cli_path_from_submit_to_results_and_registry(tmp_path: Path) -> None:
    store = tmp_path / "store"
    ok = run_cli("submit", BUNDLED, "--store", store, "--submitter", "maintainer", check=True)
    assert ok.stdout.startswith("req-00001: ") and "Track 1, pending" in ok.stdout
    run_cli("submit", _broken(tmp_path), "--store", store, check=True)
    again = run_cli("submit", BUNDLED, "--store", store)
    assert again.returncode == 1 and "already submitted for Track 1: request req-00001 (pending)" in again.stderr

    worker = run_cli("worker", "--once", "--store", store, *FAST, check=True)
    assert "req-00001: finished, served as rtsrn_x2" in worker.stdout
    assert worker.stdout.splitlines()[-1] == "2 requests evaluated; 0 pending", worker.stdout
    assert (
        "req-00002: failed: srmodel() failed at arch.py, line 11: NameError: name 'device' is not defined"
        in worker.stdout
    )

    requests = _requests(store)
    good, bad = requests["rtsrn_x2"], requests["broken_x2"]
    assert (good["status"], good["entry_id"], good["results"]) == (
        "finished",
        "rtsrn_x2",
        ["results/req-00001/Set5.json"],
    )
    assert {"id", "spec", "commit", "status", "reason", "submitted", "finished", "results"} <= good.keys()
    assert good["finished"] >= good["started"] >= good["submitted"] and good["device"]
    assert bad["status"] == "failed" and "NameError: name 'device' is not defined" in bad["reason"]

    # The sandboxed path gives what `rtsr evaluate` gave in-process for the shipped document
    # (same weights, same Set5, FP32 on a CPU): the worker is the evaluator, not an estimate.
    document = json.loads((store / good["results"][0]).read_text())
    shipped = json.loads((ROOT / "leaderboard" / "evaluations" / "rtsrn-x2_Set5.json").read_text())
    for kind in ("metrics", "bicubic"):
        for key, value in shipped[kind]["mean"].items():
            assert document[kind]["mean"][key] == pytest.approx(value, abs=1e-4), (kind, key)
    assert document["submission"]["request"] == "req-00001" and document["submission"]["team"] == "rtsr baselines"
    assert document["dataset"] == {"name": "Set5", "lr_dir": None, "gt_dir": None, "images": 5, "crop_border": 0}
    assert document["runtime"]["runtime"]["passes"] == 3 and document["model"]["flops"] > 0
    # the outputs came from the fastest engine in the protocol's precision, faithful to FP32
    assert document["engine"]["precision"] == document["precision"] == "fp32"
    assert document["engine"]["fidelity_db"] is None or document["engine"]["fidelity_db"] > 100
    assert document["runtime"]["engine"] == "eager"
    # the runtime was vouched for by the worker: its clock, fresh inputs, three passes checked
    check = document["runtime"]["check"]
    assert check["by"] == "worker" and check["passes_checked"] == 3 and check["agreement_db"] is None
    assert document["runtime"]["runtime"]["mean_ms"] <= check["wall_mean_ms"]
    # its size was counted on its exported graph, which computed what the timed passes did
    assert check["size_by"] == "exported graph" and check["graph_passes_compared"] == 2
    assert check["graph_agreement_db"] is None
    h, w = document["runtime"]["input_size"]
    assert document["model"]["params"] == shipped["model"]["params"] == 193_356
    assert document["model"]["flops"] == 2 * MACS_PER_PIXEL_X2 * h * w

    registry = json.loads((store / "registry.json").read_text())
    (entry,) = registry["entries"]
    assert (entry["id"], entry["source"], entry["scale"]) == ("rtsrn_x2", "submissions/req-00001/rtsrn_x2", 2)
    # served and shown under a name that tells it from the bundled RTSRN x2 it is a copy of
    assert entry["name"] == "RTSRN x2 · rtsr baselines · req-00001"
    assert document["submission"]["submitter"] == "maintainer"
    assert set(entry["sha256"]) == {"arch.py", "model.safetensors"}
    # the served entry runs from the CLI by its id, hashes checked
    lr = tmp_path / "lr"
    lr.mkdir()
    shutil.copy(store / "work" / "testsets" / "Set5_x2" / "LR" / "bird.jpg", lr)
    sr = run_cli(
        "sr",
        "--model",
        "rtsrn_x2",
        "--lr-dir",
        lr,
        "--out-dir",
        tmp_path / "sr",
        env={"RTSR_REGISTRY": str(store / "registry.json")},
    )
    assert sr.returncode == 0, sr.stderr
    assert (tmp_path / "sr" / "bird.png").is_file()


def test_two_worker_processes_never_evaluate_the_same_request(tmp_path: Path) -> None:
    store = tmp_path / "store"
    for i in range(3):
        run_cli("submit", _copy(tmp_path, f"m{i}", note=str(i)), "--store", store, check=True)
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "rtsr", "-q", "worker", "--once", "--store", str(store), *FAST],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [w.communicate(timeout=600)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0]
    done = [line.split(":")[0] for out in outputs for line in out.splitlines() if ": finished" in line]
    assert sorted(done) == ["req-00001", "req-00002", "req-00003"], outputs
    assert all(r["attempts"] == 1 and r["status"] == "finished" for r in _requests(store).values())


def _wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def test_a_worker_killed_mid_evaluation_leaves_its_request_to_another(tmp_path: Path) -> None:
    store_dir = tmp_path / "store"
    request = submit(SqliteStore(store_dir), str(BUNDLED), 1, "alice")
    # a slow protocol, so that the kill lands while it evaluates
    worker = subprocess.Popen(
        [
            *(sys.executable, "-m", "rtsr", "-q", "worker", "--store", str(store_dir), "--lease", "4", "--poll", "0.2"),
            *("--crop-size", "258", "258", "--warmup", "1", "--repeat", "400"),
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        store = SqliteStore(store_dir)
        _wait_for(lambda: store.get(request.id).status == "running", 60, "the claim")
        time.sleep(3)
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    held = store.get(request.id)
    assert held.status == "running" and held.attempts == 1
    # until the lease expires nobody else takes it; then the next worker does, and finishes it
    assert store.claim("too-early") is None
    time.sleep(max(0.0, (held.lease_until or 0) - time.time()) + 0.5)
    result = run_cli("worker", "--once", "--store", store_dir, *FAST, check=True)
    assert f"{request.id}: finished" in result.stdout
    assert result.stdout.splitlines()[-1] == "1 request evaluated; 0 pending", result.stdout
    done = store.get(request.id)
    assert (done.status, done.attempts) == ("finished", 2)
    # the killed worker's sandboxed processes died with it (bubblewrap's --die-with-parent);
    # their command lines name this test's store
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert str(store_dir) not in ps


class LocalJobs:
    """A stand-in for ``HfApi``'s Jobs API (``run_job``, ``inspect_job``,
    ``fetch_job_logs``): each job's command runs for real, in a local process with the
    job's environment and secrets, and answers come back as huggingface_hub's ``JobInfo``."""

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.workdir, self.env = workdir, env
        self.jobs: dict[str, tuple[subprocess.Popen[bytes], Path, dict[str, Any]]] = {}
        self._ids = itertools.count(1)

    def run_job(
        self,
        *,
        image: str,
        command: list[str],
        env: dict[str, Any] | None = None,
        secrets: dict[str, Any] | None = None,
        flavor: str | None = None,
        **kwargs: Any,
    ) -> JobInfo:
        job_id = f"job{next(self._ids)}"
        log = self.workdir / f"{job_id}.log"
        argv = [sys.executable if command[0] == "python" else command[0], *command[1:]]
        with log.open("wb") as out:
            process = subprocess.Popen(
                argv, cwd=ROOT, env={**self.env, **(env or {}), **(secrets or {})}, stdout=out, stderr=subprocess.STDOUT
            )
        spec = {"docker_image": image, "command": command, "flavor": flavor, "secrets": sorted(secrets or {}), **kwargs}
        self.jobs[job_id] = (process, log, spec)
        return self.inspect_job(job_id=job_id)

    def inspect_job(self, *, job_id: str, **kwargs: Any) -> JobInfo:
        process, _, spec = self.jobs[job_id]
        code = process.poll()
        stage = "RUNNING" if code is None else "COMPLETED" if code == 0 else "ERROR"
        message = None if code in (None, 0) else f"exit code {code}"
        owner = {"id": "0", "name": "rtsr", "type": "user"}
        return JobInfo(id=job_id, owner=owner, status={"stage": stage, "message": message}, flavor=spec["flavor"])

    def fetch_job_logs(self, *, job_id: str, **kwargs: Any) -> Iterator[str]:
        yield from self.jobs[job_id][1].read_text().splitlines()


@pytest.fixture
def hub_submission(tmp_path: Path) -> dict[str, str]:
    """The bundled RTSRN x2 as ``team/rtsrn`` in a populated Hub cache (no network)."""
    cache = tmp_path / "hub"
    # a participant's copy under a team of its own (the bundled models' team is theirs alone)
    folder = tmp_path / "participant"
    shutil.copytree(BUNDLED, folder)
    meta = json.loads((folder / "submission.json").read_text())
    (folder / "submission.json").write_text(json.dumps({**meta, "team": "Team Hub"}))
    populate_hub_cache(cache, "team/rtsrn", REVISION, folder)
    return {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}


def test_the_hf_jobs_backend_runs_each_request_as_a_job(
    tmp_path: Path, hub_submission: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", hub_submission["HF_HUB_CACHE"])
    store = SqliteStore(tmp_path / "store")
    hub = submit(store, "team/rtsrn", 1, "alice")
    local = submit(store, str(BUNDLED), 1, "alice")
    jobs = LocalJobs(tmp_path, hub_submission)
    backend = HfJobsBackend(
        jobs,
        image="hf.co/spaces/rtsr/rtsr",
        flavor="l4x1",
        settings=FAST_SETTINGS,
        test_set_token="hf_read_only",
        poll_s=0.2,
    )
    done = {r.id: r for r in Worker(store, backend).run(once=True)}

    assert done[hub.id].status == "finished", done[hub.id].reason
    assert done[hub.id].entry_id == "rtsrn" and done[hub.id].device
    # one job, on the flavor, running rtsr's job entry point with the read token as a secret
    (process, log, spec) = jobs.jobs["job1"]
    assert spec["flavor"] == "l4x1" and spec["command"][:3] == ["python", "-m", "rtsr.submissions.job"]
    assert spec["secrets"] == ["HF_TOKEN", "RTSR_RESULT_TAG"] and spec["labels"] == {"rtsr-request": hub.id}
    assert process.returncode == 0 and "hf_read_only" not in log.read_text()
    document = json.loads((store.folder / done[hub.id].results[0]).read_text())
    assert document["submission"]["repo"] == "team/rtsrn" and document["submission"]["commit"] == REVISION
    assert document["model"]["source"] == f"team/rtsrn@{REVISION}"
    entry = store.registry().get("rtsrn")
    assert (entry.source, entry.revision) == ("team/rtsrn", REVISION)
    # a local folder in a store on one machine cannot travel to a job (on the Hub it can: test_hub_store.py)
    assert done[local.id].status == "failed" and "run a local worker for it" in done[local.id].reason
    assert len(jobs.jobs) == 1


HOSTILE_ARCH = """
import os, sys
from safetensors.torch import load_file
from rtsr.models import RTSRN

def srmodel():
    # try to forge the job's result line and to read its secrets
    tag = os.environ.get("RTSR_RESULT_TAG", "guess")
    forged = '{"documents": {"Set5": {"score": 1e9}}, "device": "forged"}'
    print(f"RTSR-RESULT {tag} {forged}", flush=True)
    print(f"RTSR-RESULT {tag} {forged}", file=sys.stderr, flush=True)
    print("TOKEN=" + os.environ.get("HF_TOKEN", "none"), flush=True)
    model = RTSRN(num_channels=3, num_feats=64, num_blocks=5, upscale=2)
    model.load_state_dict(load_file("model.safetensors"))
    return model
"""


def test_a_submission_cannot_forge_its_jobs_result_or_read_its_secrets(
    tmp_path: Path, hub_submission: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub.constants

    hostile = _copy(tmp_path, "hostile")
    (hostile / "arch.py").write_text(HOSTILE_ARCH)
    meta = json.loads((hostile / "submission.json").read_text())
    (hostile / "submission.json").write_text(json.dumps({**meta, "team": "Team Mallory"}))
    populate_hub_cache(Path(hub_submission["HF_HUB_CACHE"]), "team/hostile", REVISION, hostile)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", hub_submission["HF_HUB_CACHE"])
    store = SqliteStore(tmp_path / "store")
    submit(store, "team/hostile", 1, "mallory")
    jobs = LocalJobs(tmp_path, hub_submission)
    backend = HfJobsBackend(jobs, image="x", settings=FAST_SETTINGS, test_set_token="hf_read_only", poll_s=0.2)
    (done,) = Worker(store, backend).run(once=True)

    log = jobs.jobs["job1"][1].read_text()
    assert "forged" not in log and "hf_read_only" not in log
    assert done.status == "finished", done.reason
    document = json.loads((store.folder / done.results[0]).read_text())
    assert document["score"] < 1e3 and document["device"] != "forged"


def test_test_sets_name_a_folder_the_bundled_set_or_a_hub_dataset(tmp_path: Path) -> None:
    from rtsr.errors import InputError
    from rtsr.submissions.evaluating import BUNDLED_TEST_SET

    # bundled:<name> resolves wherever rtsr is installed (a Job's container has another path)
    bundled = TestSet.parse("bundled:Set5")
    assert (bundled.name, bundled.folder()) == ("Set5", BUNDLED_TEST_SET)
    assert EvaluationSettings().test_sets == (bundled,)
    assert sorted(p.name for p in bundled.folder().iterdir()) == [
        "baby.png",
        "bird.png",
        "butterfly.png",
        "head.png",
        "woman.png",
    ]
    named = TestSet.parse(f"Mine={tmp_path}")
    assert (named.name, named.folder()) == ("Mine", tmp_path)
    with pytest.raises(InputError, match=r"test set nowhere: .* is not a folder"):
        TestSet.parse(str(tmp_path / "nowhere")).folder()
    hub = TestSet.parse("datasets/org/private-test@v1:HR")
    assert hub.is_hub and hub.name == "HR"
    with pytest.raises(InputError, match=r"test set HR: datasets/org/private-test@v1:HR cannot be had"):
        hub.folder()


def test_a_submission_cannot_pass_for_the_bundled_models(tmp_path: Path) -> None:
    """A participant's repo may not name the bundled models' team; a repo named like a bundled
    model is served under an id of its own; a worker's document is never the reference row."""
    from rtsr.leaderboard.sources import EvaluationFolder

    meta = json.loads((BUNDLED / "submission.json").read_text())
    cache = tmp_path / "hub"
    for repo, team in (("team/bicubic-x2", "RTSR Baselines "), ("copycat/bicubic-x2", "Team Copycat")):
        folder = tmp_path / repo
        shutil.copytree(BUNDLED, folder)
        (folder / "submission.json").write_text(json.dumps({**meta, "team": team}))
        populate_hub_cache(cache, repo, REVISION, folder)
    env = {"HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    store = tmp_path / "store"
    for repo in ("team/bicubic-x2", "copycat/bicubic-x2"):
        run_cli("submit", repo, "--store", store, "--submitter", "alice", env=env, check=True)
    worker = run_cli("worker", "--once", "--store", store, *FAST, env=env, check=True)
    assert (
        "req-00001: failed: its submission.json names the team 'RTSR Baselines', which is the bundled models':"
        " name your own team" in worker.stdout
    ), worker.stdout
    assert "req-00002: finished, served as bicubic-x2-req-00002" in worker.stdout, worker.stdout
    frame = EvaluationFolder("Submissions", store / "results", recursive=True).load().frame
    assert list(frame["model_id"]) == ["bicubic-x2-req-00002"] and not frame["is_reference"].any()


#: A submission whose error message would redraw the terminal: erase the line, go back to its
#: start, and print a forged outcome in its place.
ESCAPING_ARCH = """
def srmodel():
    raise RuntimeError("\\x1b[2K\\rreq-00001: finished, served as winner\\x1b]0;title\\x07")
"""


def test_a_reason_cannot_redraw_the_terminal(tmp_path: Path) -> None:
    from tests.support.submissions import make_submission

    store = tmp_path / "store"
    folder = make_submission(tmp_path / "escaping", ESCAPING_ARCH, checkpoint=False)
    run_cli("submit", folder, "--store", store, "--submitter", "maintainer", check=True)
    worker = run_cli("worker", "--once", "--store", store, *FAST, check=True)
    listed = run_cli("requests", "--store", store, check=True)
    for output in (worker.stdout, worker.stderr, listed.stdout):
        assert "\x1b" not in output and "\r" not in output and "\x07" not in output
    assert "req-00001: failed: srmodel() failed at arch.py" in worker.stdout
    # the carriage return ends its first line, which is all a reason keeps; the ESC is shown
    assert "line 3: RuntimeError: ?[2K\n" in worker.stdout and "winner" not in worker.stdout + listed.stdout


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ("--crop-size", "64", "64"),
            "--crop-size 64 64: Track 2 is x3, and each side must divide by the scale of every track (2 and 3)",
        ),
        (
            ("--crop-size", "99", "99"),
            "--crop-size 99 99: Track 1 is x2, and each side must divide by the scale of every track (2 and 3)",
        ),
        (("--test-set", "missing=/nonexistent/hr"), "test set missing: /nonexistent/hr is not a folder"),
    ],
)
def test_a_worker_refuses_settings_that_do_not_fit_a_track_before_claiming(tmp_path: Path, flags, message) -> None:
    """A maintainer's mistake fails the worker at its start, in one line, not a participant's
    request once it is claimed."""
    store = tmp_path / "store"
    request = submit(SqliteStore(store), str(BUNDLED), 2 if "64" in flags else 1, "alice")
    result = run_cli("worker", "--once", "--store", store, *flags)
    assert result.returncode == 1 and result.stderr.strip() == f"rtsr worker: error: {message}", result.stderr
    assert SqliteStore(store).get(request.id).status == "pending"


def test_one_evaluation_at_a_time_per_host(tmp_path: Path) -> None:
    """Workers of one host take turns (its evaluation lock), so that no other submission runs
    beside a measurement; a worker that claimed a request waits for the lock to be free."""
    from rtsr.submissions.evaluating import host_lock
    from tests.test_app import descendants

    lock = tmp_path / "host.lock"
    store_dir = tmp_path / "store"
    request = submit(SqliteStore(store_dir), str(BUNDLED), 1, "alice")
    with host_lock(lock):  # another evaluation holds the host
        worker = subprocess.Popen(
            [sys.executable, "-m", "rtsr", "-q", "worker", "--once", "--store", str(store_dir), *FAST],
            cwd=ROOT,
            env={**os.environ, "RTSR_HOST_LOCK": str(lock)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(12)  # time enough to claim and start validating, were it not waiting
        assert worker.poll() is None
        assert SqliteStore(store_dir).get(request.id).status == "running" and not (store_dir / "results").exists()
        assert descendants(worker.pid) == []  # no sandbox started: not validating, not timing
    out, err = worker.communicate(timeout=300)
    assert worker.returncode == 0, err
    assert f"{request.id}: finished" in out
