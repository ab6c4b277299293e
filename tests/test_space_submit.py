"""space.submit: what the Submit tab shows of a request. Reasons quote a submission's own
error messages, so they are rendered as text: Markdown (as markdown-it, which Gradio's
Python side uses, renders it) gives them no link, image or markup."""

from __future__ import annotations

from pathlib import Path

import pytest
from markdown_it import MarkdownIt

from rtsr.submissions.requests import SqliteStore
from space.submit import check_zip_report, queue_html, queues
from space.text import plain

HOSTILE = (
    "srmodel() failed: [click here](https://evil.example) ![x](https://evil.example/p.png) <b>bold</b> **loud** | cell"
)


def test_plain_text_stays_text_in_markdown() -> None:
    html = MarkdownIt("commonmark").enable("table").render(plain(HOSTILE))
    assert "<a " not in html and "<img" not in html and "<b>" not in html and "<strong>" not in html
    assert "[click here](https://evil.example)" in html  # shown as written
    assert "&lt;b&gt;bold&lt;/b&gt;" in html


def test_a_failed_request_s_reason_is_shown_as_text(tmp_path: Path) -> None:
    import sqlite3
    import time

    store = SqliteStore(tmp_path / "store")
    with sqlite3.connect(store.folder / "requests.sqlite") as db:
        db.execute(
            "INSERT INTO requests (id, spec, repo, revision, track, submitter, status, reason, submitted)"
            " VALUES ('req-00001', 'team/x@abc', 'team/x', 'abc', 1, 'alice', 'failed', ?, ?)",
            (HOSTILE, time.time()),
        )
    failed = queues(store)["failed"]
    assert [r.id for r in failed] == ["req-00001"]
    table = queue_html(failed)
    # the reason is text: no link, image or tag of its own, shown as written
    assert table.count("<a ") == 1 and "<img" not in table and "<b>" not in table
    assert "[click here](https://evil.example) ![x](https://evil.example/p.png) &lt;b&gt;bold&lt;/b&gt;" in table
    # the one link is the repo's, to the commit measured
    assert '<a href="https://huggingface.co/team/x/tree/abc" target="_blank" rel="noopener">team/x@abc</a>' in table
    # every cell says what it is, for the phone's cards; columns with nothing in them are left out
    assert 'data-label="Reason"' in table and 'data-label="Finished"' not in table
    assert queue_html([]) == '<p class="queue-empty">None.</p>'


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    import zipfile

    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


@pytest.mark.parametrize(
    ("members", "message"),
    [
        # 300 MB of zeros in a zip of 300 KB, against the app's 200 MB (4x a 50 MB upload)
        ({"arch.py": b"", "weights.bin": bytes(300 * 1024**2)}, "expands to 300 MB, over the limit of 200 MB"),
        ({f"f{i}.py": b"" for i in range(1001)}, "1001 members, over the limit of 1000"),
        ({"/".join(["d"] * 17) + "/arch.py": b""}, "is nested over 16 folders deep"),
        ({"/".join(["d"] * 400) + "/arch.py": b""}, "is nested over 16 folders deep"),
        ({"x" * 300 + ".py": b""}, "has a name over 255 characters"),
        ({"../../escape.py": b""}, "would land outside the submission"),
    ],
)
def test_check_my_zip_is_bounded_and_says_so_in_one_line(tmp_path: Path, members, message) -> None:
    """Check my zip unpacks in the app's own temporary folder, within bounds on size (as
    written, whatever the zip declares), members, depth and names; a zip over one is refused
    in one line that names the zip and no server path, and leaves nothing behind."""
    work = tmp_path / "app-temp"
    work.mkdir()
    upload = _zip(tmp_path / "submission_bomb.zip", members)
    report = check_zip_report(str(upload), None, work, 200 * 1024**2)
    # the zip named once, as text
    assert report.startswith("**submission\\_bomb.zip** cannot be checked: "), report
    assert report.count("bomb.zip") == 1, report
    assert message in report and "\n" not in report and str(tmp_path) not in report, report
    assert list(work.iterdir()) == []  # the extraction's folder is gone, nothing half-written
