"""The Submit tab: sign in, submit a Hub repo for a track, check a zip, watch the queues.

It only wires the page to :mod:`rtsr.submissions.requests` (the store) and
:mod:`rtsr.submissions.validation` (the checklist, in the sandbox). Sign-in is Gradio's
``gr.LoginButton``: real Hugging Face OAuth on a Space (``hf_oauth: true`` in README.md's
metadata); elsewhere Gradio mocks it with the account of the machine's Hub token, which needs
the Hub, so an offline app shows how to submit from the CLI instead of a button that cannot
work.
"""

from __future__ import annotations

import html
import logging
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from rtsr.constants import TRACK_SCALES
from rtsr.errors import RTSRError, first_line
from rtsr.submissions.requests import HUB_REPO, STATUSES, Request, Store, StoreError, submit
from space.text import plain

logger = logging.getLogger(__name__)

#: The queues' columns, in order. A queue shows only those with something in them.
QUEUE_COLUMNS = ("Request", "Submission", "Track", "Submitter", "Submitted", "Finished", "Device", "Reason")


#: The queues: tables on a wide screen; on a phone each request is a card of label/value
#: lines, with its reason (what a submitter of a failed request came to read) under its id.
CSS = """
.queue-table { width: 100%; border: none; border-collapse: collapse; font-size: var(--text-sm); }
.queue-table th, .queue-table td {
  text-align: left; vertical-align: top; padding: 5px 8px; border-bottom: 1px solid var(--border-color-primary);
}
.queue-table th { white-space: nowrap; background: var(--background-fill-secondary); }
.queue-table td { overflow-wrap: anywhere; }
.queue-table td.nowrap { white-space: nowrap; }
.queue-table td.reason { min-width: 18em; }
.queue-empty { opacity: 0.75; margin: 4px 0; }
/* Check my zip's report: the status and the check's name whole, the detail wrapping */
#check-report th, #check-report td { word-break: normal; overflow-wrap: normal; }
#check-report td:nth-child(-n+2) { white-space: nowrap; }
#check-report td:last-child { overflow-wrap: anywhere; }
@media (max-width: 640px) {
  .queue-table thead { position: absolute; width: 1px; height: 1px; overflow: hidden; clip-path: inset(50%); }
  .queue-table, .queue-table tbody { display: block; }
  .queue-table tr {
    display: flex; flex-direction: column; margin-bottom: 10px; padding: 4px 0;
    border: 1px solid var(--border-color-primary); border-radius: 8px;
  }
  .queue-table td {
    display: grid; grid-template-columns: 6.5em 1fr; gap: 8px; border: none; padding: 3px 10px; white-space: normal;
  }
  .queue-table td.nowrap { white-space: normal; }
  .queue-table td::before { content: attr(data-label); font-weight: 600; }
  .queue-table td.request { order: -2; }
  .queue-table td.reason { order: -1; min-width: 0; }
}
"""


def login_unavailable() -> str | None:
    """Why signing in cannot work here, or None when it can: on a Space, Hugging Face OAuth;
    elsewhere Gradio's mocked login, which asks the Hub who the machine's token belongs to."""
    from huggingface_hub import get_token, whoami
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    if os.environ.get("SPACE_ID"):
        return None
    if get_token() is None:
        return (
            "signing in needs a Hugging Face token on this machine (`hf auth login`), as Gradio mocks the login with it"
        )
    try:
        user = whoami()
    except (OfflineModeIsEnabled, HfHubHTTPError, OSError) as e:
        return f"signing in needs the Hub, which cannot be reached ({first_line(e)})"
    if user.get("type") != "user":
        return "signing in locally needs the token of a personal Hugging Face account"
    return None


def _when(text: str | None) -> str:
    return text.replace("T", " ").removesuffix("+00:00") + " UTC" if text else ""


def _queue_cells(r: Request) -> dict[str, str]:
    """A request's cells, as HTML: every text escaped (a reason quotes the submission's own
    error messages), the repo a link to the commit measured."""
    d = r.as_dict()
    if r.repo:
        shown = html.escape(f"{r.repo}@{r.revision[:7]}")
        what = f'<a href="{html.escape(r.url or "")}" target="_blank" rel="noopener">{shown}</a>'
    else:
        what = html.escape(r.spec.split("/")[-1])
    if r.entry_id and r.entry_id != (r.repo or r.spec).split("/")[-1]:
        what += f" (served as <code>{html.escape(r.entry_id)}</code>)"
    texts = {
        "Request": r.id,
        "Track": f"{r.track} (x{TRACK_SCALES[r.track]})",
        "Submitter": r.submitter,
        "Submitted": _when(d["submitted"]),
        "Finished": _when(d["finished"]),
        "Device": r.device or "",
        "Reason": r.reason,
    }
    return {"Submission": what} | {k: html.escape(v) for k, v in texts.items()}


def queue_html(requests: list[Request]) -> str:
    """One queue as the page shows it, newest first: a table of the columns that have
    something in them (on a phone, one card per request: see :data:`CSS`)."""
    if not requests:
        return '<p class="queue-empty">None.</p>'
    rows = [_queue_cells(r) for r in reversed(requests)]
    columns = [c for c in QUEUE_COLUMNS if any(row[c] for row in rows)]
    nowrap = {"Request", "Track", "Submitted", "Finished"}

    def cell(column: str, value: str) -> str:
        classes = " ".join(c for c in (column.lower(), "nowrap" if column in nowrap else "") if c)
        return f'<td class="{classes}" data-label="{column}">{value}</td>'

    head = "".join(f'<th scope="col">{c}</th>' for c in columns)
    body = "".join("<tr>" + "".join(cell(c, row[c]) for c in columns) + "</tr>" for row in rows)
    return f'<table class="queue-table"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def queues(store: Store) -> dict[str, list[Request]]:
    """The requests in each state, in :data:`STATUSES` order; none where the store cannot be
    read (:func:`store_note` says so)."""
    try:
        # as last read: a store on the Hub is asked once per poll, for every page (Live)
        everything = store.list(fresh=False)
    except StoreError:
        everything = []
    return {status: [r for r in everything if r.status == status] for status in STATUSES}


def store_note(store: Store) -> str:
    """The page's line on a store it cannot read (a corrupt database, a full disk, the Hub
    down); empty when it reads."""
    if store.unreachable is not None:
        since = time.strftime("%H:%M UTC", time.gmtime(store.unreachable[0]))
        return (
            f"⚠️ **The Hub has not answered since {since}**: the requests, the board and the models show the"
            " state of then, and requests cannot be made until it is back."
        )
    try:
        store.list("running", fresh=False)
    except StoreError:
        # why (and where the store lies) is for the maintainer: the app's log and `rtsr requests`
        return (
            "⚠️ **The request store cannot be read**: requests cannot be made or listed until the maintainer"
            " repairs it. The leaderboard and the models are not affected."
        )
    return ""


def queue_version(store: Store) -> str:
    """Changes whenever a request is made or changes state: what the page polls, cheaply
    (one query of a database, one look at a dataset's head)."""
    try:
        return store.version()
    except StoreError as e:
        return f"unreadable: {e}"


def submit_from_page(
    store: Store, spec: str, track: int, username: str | None, daily_limit: int | None
) -> tuple[Request | None, str]:
    """Submit for a signed-in user; return the request (None when refused) and the message
    for the page, one line."""
    if not username:
        return None, "Sign in with Hugging Face first: requests are made under your account."
    spec = (spec or "").strip()
    if not HUB_REPO.match(spec):
        return None, "Enter a Hub model repo as `org/name`, or `org/name@<commit>` to pin one commit."
    try:
        # a Hub repo only: a path on this server is never a submission from the page
        request = submit(store, spec, int(track), username, daily_limit, allow_local=False)
    except RTSRError as e:
        return None, first_line(e, 300)
    return request, (
        f"Queued **{request.id}**: `{request.repo}` at commit `{request.revision[:12]}` for Track {request.track}."
        " It appears under Pending below; a worker evaluates it in the sandbox."
    )


def check_zip_report(
    path: str | None, limits: Any = None, work_dir: Path | None = None, max_unzipped: int | None = None
) -> str:
    """The validation checklist of an uploaded zip, run in the sandbox, as Markdown. The zip
    is unpacked into a temporary folder in ``work_dir`` (the app's own temporary folder),
    at most ``max_unzipped`` bytes (default :data:`MAX_UNZIPPED_BYTES`) and within the other
    bounds of an extraction, and removed afterwards."""
    from rtsr.submissions.submission import MAX_UNZIPPED_BYTES, open_submission
    from rtsr.submissions.validation import VALIDATION_LIMITS, run_checks

    if not path:
        return "Upload a submission zip (`submission_<id>.zip`) first."
    name = Path(path).name
    if not name.lower().endswith(".zip"):
        return f"**{plain(name)}** is not a .zip file: pack your submission with `python -m rtsr pack`."
    with tempfile.TemporaryDirectory(prefix="rtsr-check-", dir=work_dir) as cache:
        try:
            submission = open_submission(Path(path), cache=Path(cache), max_unzipped=max_unzipped or MAX_UNZIPPED_BYTES)
            checks = run_checks(submission, None, limits or VALIDATION_LIMITS)
        except RTSRError as e:
            message = first_line(e, 300).replace(str(path), name).replace(cache, "")
            # the report names the zip once, where the message may start with it too
            message = message.removeprefix(f"{name}: ")
            return f"**{plain(name)}** cannot be checked: {plain(message)}"
    lines = ["| | check | detail |", "|---|---|---|"]
    for c in checks:
        detail = submission.without_root(c.detail)
        lines.append(f"| **{c.status.upper()}** | {plain(c.name)} | {plain(detail)} |")
    failed = [c for c in checks if c.status == "fail"]
    if len(failed) == 1:
        verdict = f"**the {plain(failed[0].name)} check failed**: fix it and check again."
    elif failed:
        verdict = f"**{len(failed)} checks failed**: fix them and check again."
    else:
        verdict = "**all checks passed**: publish it to the Hub and submit the repo above."
    return f"**{plain(name)}**: {verdict}\n\n" + "\n".join(lines)


@dataclass(frozen=True)
class SubmitView:
    """What the page's refresh needs of the Submit tab: the components it redraws (the
    store's note, the four queues' accordions and tables) and the values for them."""

    outputs: list[Any]
    refresh: Callable[[], list[Any]]


def build_submit_tab(
    store: Store, daily_limit: int | None, intro: str, work_dir: Path | None = None, max_unzipped: int | None = None
) -> SubmitView:
    """The tab's components and events; returns what the page's refresh needs."""
    problem = login_unavailable()
    gr.Markdown(intro)
    with gr.Row():
        if problem is None:
            gr.LoginButton(elem_id="submit-login")
        else:
            gr.Markdown(
                f"Submitting from this page is off here: {problem}. Submit from the command line instead:"
                " `python -m rtsr submit org/name --track 1`.",
                elem_id="submit-login-note",
            )
    with gr.Row():
        repo = gr.Textbox(
            label="Hub model repo", placeholder="org/name or org/name@<commit>", elem_id="submit-repo", scale=3
        )
        track = gr.Radio(
            [(f"Track {t} (x{s})", t) for t, s in TRACK_SCALES.items()], value=1, label="Track", elem_id="submit-track"
        )
    button = gr.Button("Submit for evaluation", variant="primary", elem_id="submit-button", interactive=problem is None)
    message = gr.Markdown(elem_id="submit-message")

    with gr.Accordion(
        "Check my zip: run the validation checklist in the sandbox, without queueing",
        open=False,
        elem_id="check-zip-box",
    ):
        upload = gr.File(label="submission_<id>.zip", file_types=[".zip"], elem_id="check-zip")
        check = gr.Button("Check", elem_id="check-button")
        report = gr.Markdown(elem_id="check-report")

    gr.Markdown("### Requests")
    gr.Markdown(f"Requests, results and the evaluated models are kept {store.where_kept()}.", elem_id="store-where")
    note = gr.Markdown(store_note(store), elem_id="store-note")
    listed = queues(store)
    accordions, tables = [], []
    for status in STATUSES:
        with gr.Accordion(f"{status.capitalize()} ({len(listed[status])})", open=True) as acc:
            table = gr.HTML(queue_html(listed[status]), elem_id=f"queue-{status}", padding=False)
        accordions.append(acc)
        tables.append(table)

    def refresh() -> list[Any]:
        listed = queues(store)
        labels = [gr.Accordion(label=f"{s.capitalize()} ({len(listed[s])})") for s in STATUSES]
        return [store_note(store), *labels, *(queue_html(listed[s]) for s in STATUSES)]

    def on_submit(spec: str, track_id: int, profile: gr.OAuthProfile | None) -> list[Any]:
        username = profile.username if profile is not None else None
        request, text = submit_from_page(store, spec, track_id, username, daily_limit)
        if request is not None:
            logger.info("request %s from %s: %s", request.id, username, request.spec)
        return [text, *refresh()]

    button.click(on_submit, [repo, track], [message, note, *accordions, *tables], api_visibility="private")

    def check_zip(path: str | None) -> str:
        return check_zip_report(path, None, work_dir, max_unzipped)

    check.click(check_zip, [upload], [report], api_visibility="private", concurrency_limit=1)
    # the file cleared (a single-file gr.File takes a new file only once the old one is
    # cleared): the report of the old one goes. Not on .change, which also fires when an
    # upload lands: a second event on the report racing the check the same click sent
    upload.clear(lambda: "", None, [report], api_visibility="private", show_progress="hidden")
    return SubmitView([note, *accordions, *tables], refresh)
