"""space.submit: what the Submit tab shows of a request. Reasons quote a submission's own
error messages, so they are rendered as text: Markdown (as markdown-it, which Gradio's
Python side uses, renders it) gives them no link, image or markup."""

from __future__ import annotations

from pathlib import Path

from markdown_it import MarkdownIt

from rtsr.submissions.requests import Store
from space.submit import plain, queue_frame, queues

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

    store = Store(tmp_path / "store")
    with sqlite3.connect(store.folder / "requests.sqlite") as db:
        db.execute(
            "INSERT INTO requests (id, spec, repo, revision, track, submitter, status, reason, submitted)"
            " VALUES ('req-00001', 'team/x@abc', 'team/x', 'abc', 1, 'alice', 'failed', ?, ?)",
            (HOSTILE, time.time()),
        )
    frame = queues(store)["failed"]
    assert list(frame["Request"]) == ["req-00001"]
    cell = frame["Reason"][0]
    html = MarkdownIt("commonmark").render(cell)
    assert "<a " not in html and "<img" not in html
    # the repo itself is a link, to the commit measured
    assert queue_frame(store.list())["Submission"][0] == "[team/x@abc](https://huggingface.co/team/x/tree/abc)"
