"""The living leaderboard in a real browser: requests made from the CLI and evaluated by a
real worker while the app runs show up in its queues, its leaderboard and its Upscale tab
without a restart; and the Submit tab, signed in with Gradio's mocked login (which asks a
local stand-in of the Hub who the token belongs to), queues a repo and refuses what it must.
"""

from __future__ import annotations

import re
import shutil
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT, RunningApp, run_cli
from tests.hub_standin import USER, HubStandIn
from tests.test_browser import TIMEOUT_MS, screenshot

playwright = pytest.importorskip("playwright.sync_api")

BUNDLED = ROOT / "submissions" / "rtsrn_x2"
FAST = ("--crop-size", "66", "66", "--warmup", "1", "--repeat", "3")
COMMIT = "fedcba9876543210fedcba9876543210fedcba98"


def _changed(folder: Path) -> Path:
    """``folder`` with one more code file: another submission."""
    (folder / "note.py").write_text("# another commit\n")
    return folder


def _new_page(browser, app: RunningApp):
    context = browser.new_context(viewport={"width": 1440, "height": 1100})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(app.url)
    page.wait_for_selector("#upload")
    return context, page


def test_evaluated_requests_reach_the_queues_the_leaderboard_and_the_demo(browser, tmp_path: Path) -> None:
    expect = playwright.expect
    store = tmp_path / "store"
    team = tmp_path / "team_rtsrn"
    shutil.copytree(BUNDLED, team)
    broken = tmp_path / "team_broken"
    shutil.copytree(BUNDLED, broken)
    arch = broken / "arch.py"
    arch.write_text(arch.read_text().replace("    return model\n", "    return model.to(device)\n"))
    # a real challenge zip: no submission.json, named as the challenge names them
    challenge = tmp_path / "challenge"
    shutil.copytree(BUNDLED, challenge)
    (challenge / "submission.json").unlink()
    (challenge / "note.py").write_text("# the challenge's layout, without our metadata\n")
    zipped = tmp_path / "submission_challenge_team.zip"
    with zipfile.ZipFile(zipped, "w") as z:
        for path in challenge.rglob("*"):
            z.write(path, path.relative_to(challenge).as_posix())

    app = RunningApp(log=tmp_path / "app.log", env={"RTSR_STORE": str(store)}).wait_ready()
    context = None
    try:
        context, page = _new_page(browser, app)
        page.get_by_role("tab", name="Submit").click()
        expect(page.locator("#submit-login-note")).to_contain_text("python -m rtsr submit")
        for spec in (team, broken, zipped):
            run_cli("submit", spec, "--store", store, "--submitter", "maintainer", check=True)
        # the page shows new requests within one poll, without a reload
        expect(page.locator("#queue-pending")).to_contain_text("team_broken", timeout=30_000)
        worker = run_cli("worker", "--once", "--store", store, *FAST, check=True)
        assert "req-00001: finished" in worker.stdout and "req-00003: finished" in worker.stdout, worker.stdout

        expect(page.locator("#queue-finished")).to_contain_text("team_rtsrn", timeout=30_000)
        expect(page.locator("#queue-finished")).to_contain_text("challenge_team")
        failed = page.locator("#queue-failed")
        expect(failed).to_contain_text("srmodel() failed at arch.py, line 11: NameError: name 'device' is not defined")
        screenshot(page, "submit_queues")

        page.get_by_role("tab", name="Leaderboard").click()
        table = page.locator("#leaderboard-table")
        page.locator("#lb-dataset input").click()
        page.get_by_role("option", name="Set5", exact=True).click()
        # two rows from the store: RTSRN (its submission.json names it and its team) and the
        # challenge zip (named after the zip); timed at 66x66 (FAST), not ranked beside 4K rows,
        # so they show when asked, marked
        submitted = table.get_by_role("row").filter(has_text="Submissions")
        expect(submitted).to_have_count(0)
        page.locator("#lb-unranked input").check()
        expect(submitted).to_have_count(2)
        expect(submitted.filter(has_text="(not 4K)")).to_have_count(2)
        expect(submitted.filter(has_text="RTSRN x2")).to_contain_text("rtsr baselines")
        expect(submitted.filter(has_text="challenge_team")).to_have_count(1)
        screenshot(page, "leaderboard_with_submissions")
        # a half-written results file is named above the plot at the next refresh; the rest load
        broken_doc = store / "results" / "req-00009" / "Set5.json"
        broken_doc.parent.mkdir(parents=True)
        broken_doc.write_text('{"schema": "rtsr.evaluate", "schema_version": 1, "model": {')
        run_cli("submit", _changed(team), "--store", store, check=True)  # a change in the store: a refresh
        expect(page.locator("#leaderboard-errors")).to_contain_text("req-00009/Set5.json", timeout=30_000)
        expect(submitted).to_have_count(2)

        # the demo runs the new entry, in a sandboxed process of its own
        page.get_by_role("tab", name="Upscale").click()
        page.locator("#model input").click()
        page.get_by_role("option", name=re.compile(r"Track 1 \(x2\) · RTSRN x2$")).nth(1).click()
        page.locator("#upload input[type=file]").set_input_files(str(ROOT / "examples" / "chelsea.png"))
        expect(page.locator("#upload img")).to_be_visible()
        page.locator("#run").click()
        expect(page.locator("#metrics")).to_contain_text("Gain over bicubic", timeout=TIMEOUT_MS)
        expect(page.locator("#download a")).to_have_attribute("href", re.compile(r"/team_rtsrn_\d+x\d+\.png$"))
        screenshot(page, "upscale_submitted_model")
    finally:
        if context is not None:
            context.close()
        app.stop()
    log = (tmp_path / "app.log").read_text()
    assert "Traceback" not in log, log


def test_the_submit_tab_signed_in_queues_a_repo_and_refuses_what_it_must(browser, tmp_path: Path) -> None:
    expect = playwright.expect
    files = ["arch.py", "model.safetensors", "submission.json"]
    models = {"team/tiny": (COMMIT, files), "team/other": (COMMIT, files), "team/notes": (COMMIT, ["README.md"])}
    with HubStandIn(models) as hub:
        env = {**hub.env(), "RTSR_STORE": str(tmp_path / "store"), "RTSR_DAILY_LIMIT": "2"}
        app = RunningApp(log=tmp_path / "app.log", env=env).wait_ready()
        context = None
        try:
            context, page = _new_page(browser, app)
            page.get_by_role("tab", name="Submit").click()
            message = page.locator("#submit-message")

            def submit(spec: str, track: int | None = None) -> None:
                page.locator("#submit-repo textarea").fill(spec)
                if track is not None:
                    page.get_by_label(f"Track {track} (x{track + 1})").check()
                page.locator("#submit-button").click()

            submit("team/tiny")
            expect(message).to_contain_text("Sign in with Hugging Face first")

            page.locator("#submit-login").click()  # Gradio's mocked login: the token's account
            page.wait_for_selector("#upload")
            page.get_by_role("tab", name="Submit").click()
            expect(page.locator("#submit-login")).to_contain_text(USER["name"])

            submit("team/tiny", track=1)
            expect(message).to_contain_text("Queued req-00001")
            expect(message).to_contain_text(COMMIT[:12])
            pending = page.locator("#queue-pending")
            expect(pending).to_contain_text("team/tiny@fedcba9")
            expect(pending).to_contain_text(USER["name"])
            screenshot(page, "submit_signed_in")

            page.locator("#submit-button").click()
            expect(message).to_contain_text("already submitted for Track 1: request req-00001 (pending)")
            submit("team/missing")
            expect(message).to_contain_text("team/missing: no such model repository")
            submit("team/notes")
            expect(message).to_contain_text("not a submission (no arch.py")
            submit(f"team/tiny@{COMMIT}", track=2)
            expect(message).to_contain_text("Queued req-00002")
            submit("team/tiny@main", track=1)
            expect(message).to_contain_text("already submitted")
            # the daily limit (2 here) counts this user's requests, refused ones aside
            submit("team/other")
            expect(message).to_contain_text("alice has made 2 requests in the last 24 hours, the limit is 2")
            submit("/etc/passwd")
            expect(message).to_contain_text("Enter a Hub model repo as org/name, or org/name@<commit>")
            screenshot(page, "submit_refusals")

            # check my zip: the checklist, run in the sandbox, without queueing
            zipped = tmp_path / "submission_mine.zip"
            with zipfile.ZipFile(zipped, "w") as z:
                for path in BUNDLED.iterdir():
                    z.write(path, path.name)
            page.get_by_text("Check my zip").click()
            page.locator("#check-zip input[type=file]").set_input_files(str(zipped))
            page.locator("#check-button").click()
            report = page.locator("#check-report")
            expect(report).to_contain_text("All checks passed", timeout=TIMEOUT_MS)
            expect(report).to_contain_text("srmodel()")
            expect(report).to_contain_text("PASS")
            screenshot(page, "submit_check_zip")
            assert not re.search(r"/tmp/|gradio", report.inner_text())
            expect(page.locator("#queue-pending")).not_to_contain_text("mine")
        finally:
            if context is not None:
                context.close()
            app.stop()
    assert any(r.startswith("GET /api/whoami-v2") for r in hub.requests)
    assert "Traceback" not in (tmp_path / "app.log").read_text()
