"""The request store, both kinds (a SQLite folder, and a Hub dataset through the real client
against tests/hub_standin.py): submitting (local and Hub, offline from a populated cache),
refusals, leases and attempts, and claims that real processes never share."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rtsr.errors import InputError, SubmissionError
from rtsr.submissions.hub_store import HubStore
from rtsr.submissions.registry import RegistryEntry
from rtsr.submissions.requests import MAX_ATTEMPTS, LeaseLost, SqliteStore, Store, StoreError, submit
from tests.hub_standin import HubStandIn
from tests.support.data import ROOT
from tests.support.submissions import make_submission, populate_hub_cache

REVISION = "0123456789abcdef0123456789abcdef01234567"


DATASET = "hf://datasets/lab/rtsr-store"


@pytest.fixture(params=["sqlite", "hub"])
def store(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    """Each store test runs against both kinds: they give the same guarantees."""
    if request.param == "sqlite":
        yield SqliteStore(tmp_path / "store")
        return
    with HubStandIn() as hub:
        hub.use_in_this_process(tmp_path / "hf", monkeypatch)
        yield HubStore(DATASET)


@pytest.fixture
def sqlite_store(tmp_path: Path) -> SqliteStore:
    return SqliteStore(tmp_path / "store")


def test_a_local_submission_is_copied_into_the_store_and_pending(store: Store, tmp_path: Path) -> None:
    folder = make_submission(tmp_path / "tiny_x2")
    request = submit(store, str(folder), 1, "alice")
    assert (request.id, request.status, request.repo, request.submitter) == ("req-00001", "pending", None, "alice")
    assert request.spec == "submissions/req-00001/tiny_x2"
    assert request.revision.startswith("sha256:")
    copied = store.folder / request.spec
    assert (copied / "arch.py").read_text() == (folder / "arch.py").read_text()
    # what runs is what was submitted, whatever happens to the folder afterwards
    (folder / "arch.py").write_text("raise SystemExit")
    assert "raise SystemExit" not in (copied / "arch.py").read_text()


def test_the_same_submission_twice_is_refused_naming_the_first_request(store: Store, tmp_path: Path) -> None:
    folder = make_submission(tmp_path / "tiny")
    first = submit(store, str(folder), 1, "alice")
    with pytest.raises(SubmissionError, match=rf"already submitted for Track 1: request {first.id} \(pending\)"):
        submit(store, str(folder), 1, "bob")
    # another track, or a changed submission, is another request
    assert submit(store, str(folder), 2, "alice").id == "req-00002"
    (folder / "notes.py").write_text("# changed\n")
    assert submit(store, str(folder), 1, "alice").id == "req-00003"


def test_a_failed_request_can_be_submitted_again(store: Store, tmp_path: Path) -> None:
    folder = make_submission(tmp_path / "tiny")
    first = submit(store, str(folder), 1, "alice")
    claimed = store.claim("w1")
    assert claimed is not None and claimed.id == first.id
    store.fail(first.id, "w1", "srmodel() failed\nsecond line\nthird line is dropped")
    assert store.get(first.id).reason == "srmodel() failed\nsecond line"
    assert submit(store, str(folder), 1, "alice").status == "pending"


def test_the_daily_limit_counts_one_submitters_requests(store: Store, tmp_path: Path) -> None:
    def distinct(i: int) -> str:
        return str(make_submission(tmp_path / f"m{i}", files={"version.py": f"VERSION = {i}\n"}))

    for i in range(2):
        submit(store, distinct(i), 1, "alice", daily_limit=2)
    with pytest.raises(SubmissionError, match="alice has made 2 requests in the last 24 hours, the limit is 2"):
        submit(store, distinct(2), 1, "alice", daily_limit=2)
    assert submit(store, str(tmp_path / "m2"), 1, "bob", daily_limit=2).submitter == "bob"


def test_bad_specs_are_refused_in_one_line(store: Store, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(SubmissionError, match=r"arch\.py"):
        submit(store, str(tmp_path / "empty"), 1, "alice")
    with pytest.raises(InputError, match="track must be one of 1, 2"):
        submit(store, str(make_submission(tmp_path / "m")), 3, "alice")
    with pytest.raises(SubmissionError, match="not a folder, a zip, or a Hub repo"):
        submit(store, "not a repo", 1, "alice")
    assert store.list() == []


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    import huggingface_hub.constants

    cache = tmp_path / "hub"
    populate_hub_cache(cache, "team/tiny", REVISION, make_submission(tmp_path / "upload"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    return cache


def test_a_hub_repo_is_pinned_to_the_commit_its_branch_points_at(sqlite_store: Store, hub_cache: Path) -> None:
    store = sqlite_store
    request = submit(store, "team/tiny", 1, "alice")
    assert (request.spec, request.repo, request.revision) == (f"team/tiny@{REVISION}", "team/tiny", REVISION)
    assert request.url == f"https://huggingface.co/team/tiny/tree/{REVISION}"
    with pytest.raises(SubmissionError, match=f"team/tiny@{REVISION} is already submitted"):
        submit(store, f"team/tiny@{REVISION}", 1, "bob")


def test_a_hub_repo_or_revision_not_found_is_refused(sqlite_store: Store, hub_cache: Path) -> None:
    store = sqlite_store
    with pytest.raises(SubmissionError, match="team/missing: not found in the local Hub cache"):
        submit(store, "team/missing", 1, "alice")
    with pytest.raises(SubmissionError, match="team/tiny@v2: not found"):
        submit(store, "team/tiny@v2", 1, "alice")


def test_only_the_worker_holding_a_request_can_finish_it(store: Store, tmp_path: Path) -> None:
    request = submit(store, str(make_submission(tmp_path / "tiny")), 1, "alice")
    store.claim("w1", lease_s=0.01)
    time.sleep(0.05)
    # w1's lease ran out: w2's claim takes the request back, and w1 can change nothing
    again = store.claim("w2")
    assert again is not None and (again.id, again.worker, again.attempts) == (request.id, "w2", 2)
    entry = RegistryEntry("tiny", "Tiny", "", 2, 1, request.spec, None, {})
    document = json.loads((ROOT / "leaderboard" / "evaluations" / "rtsrn-x2_Set5.json").read_text())
    with pytest.raises(LeaseLost, match="no longer held by worker w1"):
        store.finish(request.id, "w1", {"Set5": document}, entry, "cpu")
    with pytest.raises(LeaseLost):
        store.fail(request.id, "w1", "late")
    # a document the leaderboard could not read is refused, and nothing is written
    with pytest.raises(InputError, match=r"req-00001/Set5: schema None vNone, expected 'rtsr\.evaluate' v1"):
        store.finish(request.id, "w2", {"Set5": {"x": 1}}, entry, "cpu")
    assert store.get(request.id).status == "running" and not store.results_dir.exists()
    done = store.finish(request.id, "w2", {"Set5": document}, entry, "cpu")
    assert (done.status, done.entry_id, done.results) == ("finished", "tiny", ["results/req-00001/Set5.json"])
    # written as given, named as the model is served
    assert json.loads((store.folder / done.results[0]).read_text()) == {
        **document,
        "model": {**document["model"], "id": "tiny"},
    }
    assert [e.id for e in store.registry().entries] == ["tiny"]


def test_a_request_whose_workers_keep_dying_fails_instead_of_looping(store: Store, tmp_path: Path) -> None:
    request = submit(store, str(make_submission(tmp_path / "tiny")), 1, "alice")
    for i in range(MAX_ATTEMPTS):
        claimed = store.claim(f"w{i}", lease_s=0.01)
        assert claimed is not None and claimed.attempts == i + 1
        time.sleep(0.05)
    assert store.claim("last") is None
    failed = store.get(request.id)
    assert failed.status == "failed"
    assert failed.reason == f"its worker stopped while evaluating it {MAX_ATTEMPTS} times; not retried"


CLAIMER = """
import json, sys
from rtsr.submissions.requests import SqliteStore
store, claimed = SqliteStore(sys.argv[1]), []
while (request := store.claim(sys.argv[2])) is not None:
    claimed.append(request.id)
print(json.dumps(claimed))
"""


def test_concurrent_processes_never_claim_the_same_request(sqlite_store: SqliteStore, tmp_path: Path) -> None:
    store = sqlite_store
    folder = make_submission(tmp_path / "tiny")
    total = 60
    with sqlite3.connect(store.folder / "requests.sqlite") as db:  # fast: the rows, not 60 copies
        db.executemany(
            "INSERT INTO requests (id, spec, repo, revision, track, submitter, status, submitted)"
            " VALUES (?, ?, NULL, ?, 1, 'test', 'pending', ?)",
            [(f"req-{i:05d}", str(folder), f"sha256:{i}", time.time()) for i in range(total)],
        )
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", CLAIMER, str(store.folder), f"w{i}"], cwd=ROOT, stdout=subprocess.PIPE, text=True
        )
        for i in range(4)
    ]
    claims = [json.loads(p.communicate(timeout=120)[0]) for p in processes]
    everything = [c for claimed in claims for c in claimed]
    assert len(everything) == total and len(set(everything)) == total
    assert {r.status for r in store.list()} == {"running"}


def test_a_local_submission_that_ships_a_link_out_of_its_folder_is_refused(store: Store, tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text("hf_secret")
    folder = make_submission(tmp_path / "linky")
    (folder / "notes.txt").symlink_to(secret)
    (folder / "data").mkdir()
    (folder / "data" / "blob").symlink_to("../../token")
    with pytest.raises(SubmissionError) as error:
        submit(store, str(folder), 1, "mallory")
    assert (
        str(error.value)
        == "data/blob is a link that leaves the submission's folder: ship the file itself (1 more such links)"
    )
    assert store.list() == [] and not (store.folder / "submissions").exists()
    # a link within its own folder is copied as a link in a folder, as the file in a dataset
    (folder / "notes.txt").unlink()
    (folder / "data" / "blob").unlink()
    (folder / "data" / "blob").symlink_to("../arch.py")
    request = submit(store, str(folder), 1, "mallory")
    copied = store.folder / request.spec / "data" / "blob"
    if isinstance(store, SqliteStore):
        assert copied.is_symlink() and copied.readlink() == Path("../arch.py")
    else:
        assert copied.read_text() == (folder / "arch.py").read_text()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("../shared", "'../shared' is not a Hub repo id"),
        ("-team/tiny", "'-team/tiny' is not a Hub repo id"),
        ("team/tiny@../../../etc", "not a folder, a zip, or a Hub repo"),
    ],
)
def test_specs_that_are_not_hub_repos_are_refused_before_the_cache_is_read(store: Store, spec: str, message: str):
    with pytest.raises(SubmissionError, match=re.escape(message)):
        submit(store, spec, 1, "mallory", allow_local=False)
    assert store.list() == []


def test_the_page_never_takes_a_path_on_the_server(sqlite_store: Store, tmp_path: Path, monkeypatch) -> None:
    from space.submit import submit_from_page

    store = sqlite_store
    monkeypatch.chdir(ROOT)  # where submissions/rtsrn_x2 is a folder
    cases = {
        # a name that could be a repo is looked up on the Hub, never on the disk
        "submissions/rtsrn_x2": "submissions/rtsrn_x2: not found in the local Hub cache",
        str(ROOT / "submissions" / "rtsrn_x2"): "Enter a Hub model repo as `org/name`",
        "./submissions/rtsrn_x2": "Enter a Hub model repo as `org/name`",
    }
    for spec, expected in cases.items():
        request, message = submit_from_page(store, spec, 1, "mallory", 3)
        assert request is None and message.startswith(expected), (spec, message)
    assert store.list() == []
    assert submit_from_page(store, "team/tiny", 1, None, 3) == (
        None,
        "Sign in with Hugging Face first: requests are made under your account.",
    )


@pytest.mark.parametrize("taken", ["rtsrn-x2", "bicubic-x2", "bicubic"])
def test_an_evaluated_entry_never_takes_a_bundled_id(store: Store, tmp_path: Path, taken: str) -> None:
    """A repo named like a bundled model is served under its own id, not as ours."""
    request = submit(store, str(make_submission(tmp_path / taken)), 1, "alice")
    store.claim("w1")
    entry = RegistryEntry(taken, "Mine", "Team Mine", 2, 1, request.spec, None, {})
    document = json.loads((ROOT / "leaderboard" / "evaluations" / "rtsrn-x2_Set5.json").read_text())
    done = store.finish(request.id, "w1", {"Set5": document}, entry, "cpu")
    assert done.entry_id == f"{taken}-{request.id}"
    assert json.loads((store.folder / done.results[0]).read_text())["model"]["id"] == done.entry_id
    assert [e.id for e in store.registry().entries] == [f"{taken}-{request.id}"]


def _document() -> dict:
    return json.loads((ROOT / "leaderboard" / "evaluations" / "rtsrn-x2_Set5.json").read_text())


#: Finishes the claimed request in a process whose files may grow to 16 KB at most: the results
#: document (about 30 KB) cannot be written, as on a full disk.
FULL_DISK = """
import json, resource, signal, sys
from rtsr.submissions.registry import RegistryEntry
from rtsr.submissions.requests import SqliteStore, StoreError
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
store = SqliteStore(sys.argv[1])
request = store.get("req-00001")
entry = RegistryEntry("tiny", "Tiny", "T", 2, 1, request.spec, None, {})
document = json.loads(open(sys.argv[2]).read())
resource.setrlimit(resource.RLIMIT_FSIZE, (16 * 1024, 16 * 1024))
try:
    store.finish(request.id, "w1", {"Set5": document}, entry, "cpu")
except StoreError as e:
    print(e)
"""


@pytest.mark.parametrize(("limit", "pad"), [(16 * 1024, 0), (512 * 1024, 1024 * 1024)], ids=["database", "document"])
def test_a_finish_that_cannot_be_written_leaves_nothing_and_a_retry_registers_once(
    sqlite_store: SqliteStore, tmp_path: Path, limit: int, pad: int
) -> None:
    """Results and registry entry appear only with the finished state: a full disk midway
    leaves the request running with no results and no entry, and its retry (or a second
    finish of the same submission) registers it once."""
    store = sqlite_store
    request = submit(store, str(make_submission(tmp_path / "tiny")), 1, "alice")
    store.claim("w1")
    shipped = ROOT / "leaderboard" / "evaluations" / "rtsrn-x2_Set5.json"
    result = subprocess.run(
        [sys.executable, "-c", FULL_DISK, str(store.folder), str(shipped), str(limit), str(pad)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    # the database or the document: whichever the full disk stops first, in one line
    assert re.fullmatch(
        r".*(: cannot record req-00001's results|requests\.sqlite: the request store cannot be used) \(.*\)\n",
        result.stdout,
    ), result.stdout
    assert store.get(request.id).status == "running"
    assert not list(store.results_dir.rglob("*.json")) and store.registry().entries == []
    entry = RegistryEntry("tiny", "Tiny", "T", 2, 1, request.spec, None, {})
    done = store.finish(request.id, "w1", {"Set5": _document()}, entry, "cpu")
    assert done.status == "finished" and [e.id for e in store.registry().entries] == ["tiny"]
    # the same submission finished again (a worker whose commit was lost, a retry): one entry
    with sqlite3.connect(store.database) as db:
        db.execute("UPDATE requests SET status = 'running', worker = 'w1' WHERE id = ?", (request.id,))
    again = store.finish(request.id, "w1", {"Set5": _document()}, entry, "cpu")
    assert again.entry_id == "tiny" and [e.id for e in store.registry().entries] == ["tiny"]
    assert [p.relative_to(store.folder).as_posix() for p in store.results_dir.rglob("*.json")] == again.results


def test_a_corrupt_store_is_one_line_everywhere(tmp_path: Path) -> None:
    folder = tmp_path / "store"
    SqliteStore(folder)
    (folder / "requests.sqlite").write_bytes(b"this is not a database" * 100)
    for suffix in ("-wal", "-shm"):
        (folder / f"requests.sqlite{suffix}").unlink(missing_ok=True)
    store = SqliteStore(folder)  # opens, so that what does not need it keeps working
    with pytest.raises(
        StoreError, match=r"requests\.sqlite: the request store cannot be used \(file is not a database\)$"
    ):
        store.list()
    for command in (("requests",), ("worker", "--once", "--crop-size", "66", "66")):
        result = subprocess.run(
            [sys.executable, "-m", "rtsr", "-q", *command, "--store", str(folder)],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        assert result.returncode == 1, result
        assert result.stderr.strip().endswith("the request store cannot be used (file is not a database)")
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr, result.stderr
