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

from tests.hub_standin import USER, HubStandIn
from tests.support.app import RunningApp
from tests.support.browser import VIEWPORTS, attach, open_page
from tests.support.cli import run_cli
from tests.support.data import ROOT
from tests.test_browser import TIMEOUT_MS, model_input, open_tab, pick_model, run, screenshot, upload

playwright = pytest.importorskip("playwright.sync_api")

BUNDLED = ROOT / "submissions" / "rtsrn_x2"
FAST = ("--crop-size", "66", "66", "--warmup", "1", "--repeat", "3")
COMMIT = "fedcba9876543210fedcba9876543210fedcba98"


def _changed(folder: Path) -> Path:
    """``folder`` with one more code file: another submission."""
    (folder / "note.py").write_text("# another commit\n")
    return folder


#: A laptop's width, tall enough for the Submit tab's queues without scrolling.
TALL = {"width": 1440, "height": 1100}


#: The bundled RTSRN x2 queued from a folder, as the worker names it (schema.SubmissionRecord.label).
QUEUED = "RTSRN x2 · rtsr baselines · req-00001"


def _compare_two_models(page, viewport: str) -> None:
    """Model A the bundled RTSRN x2, model B the same model from the queue: two names told
    apart in the slider, the metrics table, the timings and the detail."""
    expect = playwright.expect
    if page.locator("#model input").input_value() != "Track 1 (x2) · RTSRN x2":
        pick_model(page, "Track 1 (x2) · RTSRN x2")
    # model B: the other models of model A's track (x2), none of Track 2's, no bicubic
    page.locator("#model-b input").click()
    expect(page.get_by_role("option", name="RTSRN x3")).to_have_count(0)
    expect(page.get_by_role("option", name="Bicubic x2")).to_have_count(0)
    expect(page.get_by_role("option", name="RTSRN x2", exact=True)).to_have_count(0)  # model A itself
    page.get_by_role("option", name=QUEUED, exact=True).click()
    expect(page.locator("#compare")).to_be_hidden()  # the slider's left side is model B's
    upload(page, ROOT / "examples" / "astronaut.png")
    run(page)
    caption = page.locator("#slider-caption")
    expect(caption).to_contain_text(f"◀ left: {QUEUED} (model B) · right: RTSRN x2 ▶")
    expect(page.locator("#slider img").first).to_have_attribute("src", re.compile(r"before_model_b\.jpg$"))
    metrics = page.locator("#metrics")
    rows = {}
    for line in metrics.inner_text().splitlines():
        cells = [c.strip() for c in line.split("\t") if c.strip()]
        if len(cells) == 5 and re.fullmatch(r"\d+\.\d+", cells[1]):
            rows[cells[0]] = [float(c) for c in cells[1:]]
    assert list(rows) == ["RTSRN x2", f"{QUEUED} (model B)", "Bicubic"], rows
    # the same weights: the same numbers, to the engines' rounding
    ahead = rows["RTSRN x2"][0] - rows[f"{QUEUED} (model B)"][0]
    assert abs(ahead) < 0.05
    shown = re.search(rf"RTSRN x2 − {re.escape(QUEUED)}: ([+-]\d+\.\d+) dB", metrics.inner_text())
    assert shown and float(shown.group(1)) == pytest.approx(ahead, abs=0.0015)
    expect(page.locator("#timing")).to_contain_text(f"Model B, {QUEUED}: forward")
    # the detail shows both models, each by its name
    model_input(page).click()
    images = page.locator("#detail img")
    expect(images).to_have_count(5)
    alts = [images.nth(i).get_attribute("alt") for i in range(5)]
    assert alts[1:] == ["Bicubic", "RTSRN x2", f"{QUEUED} (model B)", "Ground truth"]
    page.locator("#slider").scroll_into_view_if_needed()
    screenshot(page, f"upscale_two_models_{viewport}")
    # no model B: the old result goes, and the slider's "before" choice is back
    page.locator("#model-b input").click()
    page.get_by_role("option", name="None: compare with bicubic or the input").click()
    expect(page.locator("#compare")).to_be_visible()
    expect(page.locator("#slider img")).to_have_count(0)


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
    reason = "srmodel() failed at arch.py, line 11: NameError: name 'device' is not defined"

    app = RunningApp(log=tmp_path / "app.log", env={"RTSR_STORE": str(store)}).wait_ready()
    contexts = []
    try:
        context, page = open_page(browser, app, TALL)
        contexts.append(context)
        page.get_by_role("tab", name="Submit").click()
        expect(page.locator("#submit-login-note")).to_contain_text("python -m rtsr submit")
        for spec in (team, broken, zipped):
            run_cli("submit", spec, "--store", store, "--submitter", "maintainer", check=True)
        # the page shows new requests within one poll, without a reload
        expect(page.locator("#queue-pending")).to_contain_text("team_broken", timeout=30_000)
        # no page is open while the worker runs: the app's own first values are from before
        context.close()
        worker = run_cli("worker", "--once", "--store", store, *FAST, check=True)
        assert "req-00001: finished" in worker.stdout and "req-00003: finished" in worker.stdout, worker.stdout
        assert "3 requests evaluated; 0 pending" in worker.stdout, worker.stdout

        # A page loaded now shows the store as it is, at once: well within one poll (5 s).
        context, page = open_page(browser, app, VIEWPORTS["phone"])
        contexts.append(context)
        open_tab(page, "Submit")
        expect(page.get_by_text("Finished (2)")).to_be_visible(timeout=3_000)
        expect(page.get_by_text("Failed (1)")).to_be_visible(timeout=3_000)
        # On a phone each request is a card: the failed one's reason under its id, whole, on screen.
        card_reason = page.locator("#queue-failed td.reason")
        expect(card_reason).to_contain_text(reason)
        card_reason.scroll_into_view_if_needed()
        box, request = card_reason.bounding_box(), page.locator("#queue-failed td.request").bounding_box()
        assert box is not None and request is not None
        assert box["x"] >= 0 and box["x"] + box["width"] <= VIEWPORTS["phone"]["width"], box
        assert request["y"] < box["y"] < request["y"] + 3 * request["height"], (request, box)  # right under it
        expect(page.locator("#queue-failed thead")).not_to_be_in_viewport()
        screenshot(page, "submit_queues_phone")
        # the two x2 models of one name read apart in the model list, and compare as two
        open_tab(page, "Upscale")
        page.locator("#model input").click()
        expect(page.get_by_role("option", name=f"Track 1 (x2) · {QUEUED}", exact=True)).to_have_count(1)
        page.get_by_role("option", name="Track 1 (x2) · RTSRN x2", exact=True).click()
        _compare_two_models(page, "phone")
        context.close()

        context, page = open_page(browser, app, TALL)
        contexts.append(context)
        page.get_by_role("tab", name="Submit").click()
        expect(page.locator("#queue-finished")).to_contain_text("team_rtsrn")
        expect(page.locator("#queue-finished")).to_contain_text("challenge_team")
        failed = page.locator("#queue-failed")
        expect(failed).to_contain_text(reason)
        # on a wide screen, a table whose Reason column is on screen
        header = failed.locator("th", has_text="Reason")
        box = header.bounding_box()
        assert box is not None and box["x"] + box["width"] <= 1440, box
        screenshot(page, "submit_queues")

        page.get_by_role("tab", name="Leaderboard").click()
        table = page.locator("#leaderboard-table")
        page.locator("#lb-dataset input").click()
        page.get_by_role("option", name="Set5", exact=True).click()
        # two rows from the store: RTSRN (its submission.json names it and its team) and the
        # challenge zip (named after the zip, with its submitter); timed at 66x66 (FAST), not
        # ranked beside 4K rows, so they show when asked, marked
        submitted = table.get_by_role("row").filter(has_text="Submissions")
        expect(submitted).to_have_count(0)
        page.locator("#lb-unranked input").check()
        expect(submitted).to_have_count(2)
        expect(submitted.filter(has_text="(not 4K)")).to_have_count(2)
        expect(submitted.filter(has_text=QUEUED)).to_have_count(1)
        expect(submitted.filter(has_text="challenge_team · maintainer · req-00003")).to_have_count(1)
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
        pick_model(page, f"Track 1 (x2) · {QUEUED}")
        page.locator("#upload input[type=file]").set_input_files(str(ROOT / "examples" / "chelsea.png"))
        expect(page.locator("#upload img")).to_be_visible()
        page.locator("#run").click()
        expect(page.locator("#metrics")).to_contain_text("Gain over bicubic", timeout=TIMEOUT_MS)
        expect(page.locator("#metrics")).to_contain_text(QUEUED)
        expect(page.locator("#download a")).to_have_attribute("href", re.compile(r"/team_rtsrn_\d+x\d+\.png$"))
        screenshot(page, "upscale_submitted_model")
        _compare_two_models(page, "desktop")
    finally:
        for context in contexts:
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
            context, page = open_page(browser, app, TALL)
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
            attach(page, "check-zip", zipped)
            page.locator("#check-button").click()
            report = page.locator("#check-report")
            expect(report).to_contain_text("all checks passed", timeout=TIMEOUT_MS)
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
