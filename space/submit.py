"""The Submit tab: sign in, submit a Hub repo for a track, check a zip, watch the queues.

It only wires the page to :mod:`rtsr.submissions.requests` (the store) and
:mod:`rtsr.submissions.validation` (the checklist, in the sandbox). Sign-in is Gradio's
``gr.LoginButton``: real Hugging Face OAuth on a Space (``hf_oauth: true`` in README.md's
metadata); elsewhere Gradio mocks it with the account of the machine's Hub token, which needs
the Hub, so an offline app shows how to submit from the CLI instead of a button that cannot
work.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from rtsr.constants import TRACK_SCALES
from rtsr.errors import RTSRError, first_line
from rtsr.submissions.requests import HUB_REPO, STATUSES, Request, Store, StoreError, submit

logger = logging.getLogger(__name__)

#: The queues' columns: (header, how to read it from a request's dict).
QUEUE_COLUMNS = ("Request", "Submission", "Track", "Submitter", "Submitted", "Finished", "Device", "Reason")


#: The queues on a phone: the tables keep readable columns and scroll sideways, rather than
#: breaking every header into one letter per line.
CSS = """
[id^="queue-"] table { min-width: 760px; }
[id^="queue-"] th { word-break: normal; overflow-wrap: normal; }
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


#: Characters Markdown (and the HTML it allows) gives a meaning to.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+!|~])")


def plain(text: str) -> str:
    """``text`` shown as it is in a Markdown cell: reasons and check details quote the
    submission's own error messages, which must not become links, images or markup."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)


def _when(text: str | None) -> str:
    return text.replace("T", " ").removesuffix("+00:00") + " UTC" if text else ""


def queue_frame(requests: list[Request]) -> pd.DataFrame:
    """The requests as the page shows them, newest first."""
    rows = []
    for r in reversed(requests):
        d = r.as_dict()
        what = f"[{r.repo}@{r.revision[:7]}]({r.url})" if r.repo else plain(r.spec.split("/")[-1])
        if r.entry_id and r.entry_id != (r.repo or r.spec).split("/")[-1]:
            what += f" (served as `{r.entry_id}`)"
        rows.append(
            [
                r.id,
                what,
                f"{r.track} (x{TRACK_SCALES[r.track]})",
                plain(r.submitter),
                _when(d["submitted"]),
                _when(d["finished"]),
                plain(r.device or ""),
                plain(r.reason),
            ]
        )
    return pd.DataFrame(rows, columns=list(QUEUE_COLUMNS))


def queues(store: Store) -> dict[str, pd.DataFrame]:
    """One frame per state, in :data:`STATUSES` order; empty ones where the store cannot be
    read (:func:`store_note` says so)."""
    try:
        # as last read: a store on the Hub is asked once per poll, for every page (Live)
        everything = store.list(fresh=False)
    except StoreError:
        everything = []
    return {status: queue_frame([r for r in everything if r.status == status]) for status in STATUSES}


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
        return f"{name} is not a .zip file."
    with tempfile.TemporaryDirectory(prefix="rtsr-check-", dir=work_dir) as cache:
        try:
            submission = open_submission(Path(path), cache=Path(cache), max_unzipped=max_unzipped or MAX_UNZIPPED_BYTES)
            checks = run_checks(submission, None, limits or VALIDATION_LIMITS)
        except RTSRError as e:
            message = first_line(e, 300).replace(str(path), name).replace(cache, "")
            return f"**{name}** cannot be checked: {message}"
    lines = ["| | check | detail |", "|---|---|---|"]
    for c in checks:
        detail = submission.without_root(c.detail)
        lines.append(f"| **{c.status.upper()}** | {plain(c.name)} | {plain(detail)} |")
    failed = [c for c in checks if c.status == "fail"]
    verdict = (
        f"**{len(failed)} failed**: fix them and check again."
        if failed
        else "**All checks passed**: publish it to the Hub and submit the repo above."
    )
    return f"**{name}**: {verdict}\n\n" + "\n".join(lines)


def build_submit_tab(
    store: Store, daily_limit: int | None, intro: str, work_dir: Path | None = None, max_unzipped: int | None = None
) -> dict[str, Any]:
    """The tab's components; returns what the app refreshes (``queues``: the four frames
    and their accordions)."""
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
    frames = queues(store)
    accordions, tables = [], []
    for status in STATUSES:
        with gr.Accordion(f"{status.capitalize()} ({len(frames[status])})", open=True) as acc:
            table = gr.Dataframe(
                frames[status], datatype="markdown", interactive=False, wrap=True, elem_id=f"queue-{status}"
            )
        accordions.append(acc)
        tables.append(table)

    def refresh() -> list[Any]:
        frames = queues(store)
        labels = [gr.Accordion(label=f"{s.capitalize()} ({len(frames[s])})") for s in STATUSES]
        return [store_note(store), *labels, *(frames[s] for s in STATUSES)]

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
    return {"refresh": refresh, "outputs": [note, *accordions, *tables]}
