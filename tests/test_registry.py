import json
import shutil

import pytest
import torch

from rtsr.errors import SubmissionError
from rtsr.loading import load
from rtsr.submissions.registry import BUNDLED_REGISTRY, Registry, RegistryEntry, entry_for
from rtsr.submissions.submission import open_submission
from tests.support.submissions import make_submission, populate_hub_cache

REVISION = "3f2a9c1e8b7d6a5f4e3d2c1b0a9f8e7d6c5b4a39"


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """A Hub cache holding org/tiny at REVISION, as huggingface_hub lays it out."""
    import huggingface_hub.constants

    cache = tmp_path / "hub"
    populate_hub_cache(cache, "org/tiny", REVISION, make_submission(tmp_path / "upload"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    assert huggingface_hub.constants.HF_HUB_OFFLINE
    return cache


def test_bundled_registry_loads_every_entry():
    registry = Registry.read(BUNDLED_REGISTRY)
    assert {e.id for e in registry.entries} >= {"bicubic-x2", "bicubic-x3"}
    x = torch.rand(1, 3, 8, 10)
    for entry in registry.entries:
        loaded = registry.load(entry.id)
        assert loaded.module(x).shape == (1, 3, 8 * entry.scale, 10 * entry.scale)
        assert loaded.descriptor.id == entry.id


def test_hub_submission_through_the_cache(hub_cache):
    sub = open_submission(f"org/tiny@{REVISION}")
    assert sub.revision == REVISION and sub.name == "tiny"
    assert sub.root.is_relative_to(hub_cache)
    loaded = load(f"org/tiny@{REVISION}")
    assert loaded.descriptor.scale == 2 and loaded.descriptor.source == f"org/tiny@{REVISION}"


def test_hub_revision_not_in_the_cache(hub_cache):
    with pytest.raises(SubmissionError, match="not in the local Hub cache"):
        open_submission("org/tiny@" + "0" * 40)


def test_registry_round_trip_with_a_hub_entry(tmp_path, hub_cache):
    registry = Registry.read(tmp_path / "registry.json")
    entry = entry_for(open_submission(f"org/tiny@{REVISION}"), registry.path.parent)
    assert (entry.id, entry.source, entry.revision, entry.track) == ("tiny", "org/tiny", REVISION, 1)
    assert sorted(entry.sha256) == ["arch.py", "checkpoint.pth"]
    registry.add(entry)
    registry.write()
    again = Registry.read(tmp_path / "registry.json")
    assert again.entries == [entry]
    assert again.load("tiny").descriptor.name == "Tiny"
    with pytest.raises(SubmissionError, match="already registered"):
        again.add(entry)


def _local_registry(tmp_path):
    root = make_submission(tmp_path / "subs" / "tiny")
    registry = Registry.read(tmp_path / "subs" / "registry.json")
    registry.add(entry_for(open_submission(root), registry.path.parent))
    registry.add(entry_for(open_submission(make_submission(tmp_path / "subs" / "other")), registry.path.parent))
    registry.write()
    return root, Registry.read(registry.path)


def _append(path, text):
    with path.open("a") as f:
        f.write(text)


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (
            lambda root: (root / "arch.py").write_text((root / "arch.py").read_text() + "\n# changed\n"),
            "arch.py does not match",
        ),
        (lambda root: (root / "evil.py").write_text("import os"), "unregistered code or weights: evil.py"),
        (lambda root: (root / "checkpoint.pth").unlink(), "checkpoint.pth is missing"),
        (lambda root: shutil.rmtree(root), "no such folder"),
    ],
)
def test_tampered_entries_are_refused_and_the_others_keep_working(tmp_path, tamper, message):
    root, registry = _local_registry(tmp_path)
    tamper(root)
    registry.open(registry.get("other"))  # untouched: still opens
    with pytest.raises(SubmissionError) as refused:
        registry.open(registry.get("tiny"))
    assert message in str(refused.value)


def test_registry_rejects_unpinned_hub_sources_and_bad_files(tmp_path):
    registry = Registry.read(tmp_path / "r.json")
    with pytest.raises(SubmissionError, match="full 40-character commit"):
        registry.add(RegistryEntry("x", "X", "", 2, 1, "org/x", "main"))
    (tmp_path / "bad.json").write_text(json.dumps({"entries": [{"id": "x"}]}))
    with pytest.raises(SubmissionError, match="not a valid registry"):
        Registry.read(tmp_path / "bad.json")


def test_local_submissions_outside_the_registry_folder_cannot_be_registered(tmp_path):
    root = make_submission(tmp_path / "elsewhere" / "s")
    with pytest.raises(SubmissionError, match="must sit below"):
        entry_for(open_submission(root), tmp_path / "registry_dir")
