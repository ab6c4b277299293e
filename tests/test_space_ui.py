"""space.ui pieces that the app and browser tests cannot reach on this host."""

import logging
import sys
import types
from pathlib import Path

import torch

from rtsr.errors import InputError
from rtsr.serving import serve
from space.upscale_tab import _user_error, on_gpu


def test_gpu_work_runs_under_zerogpu_s_decorator_where_spaces_is_present(monkeypatch):
    assert on_gpu(serve) is serve  # no spaces package here: the function as it is

    calls = []

    def gpu(duration: int):
        def decorate(fn):
            calls.append((fn, duration))
            return lambda *a, **k: ("on gpu", fn(*a, **k))

        return decorate

    # ZeroGPU's package is only on Hugging Face's GPU Spaces; its decorator's shape is GPU(duration=...)(fn)
    monkeypatch.setitem(sys.modules, "spaces", types.SimpleNamespace(GPU=gpu))
    wrapped = on_gpu(len)
    assert calls == [(len, 60)]
    assert wrapped("abc") == ("on gpu", 3)


def test_errors_become_one_line_messages_and_only_faults_are_logged(caplog):
    with caplog.at_level(logging.ERROR, logger="space.upscale_tab"):
        refusal = _user_error(InputError("image is too small\nsecond line"))
        oom = _user_error(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
        assert caplog.records == []
        fault = _user_error(KeyError("boom"))
    assert (refusal.message, refusal.duration, refusal.print_exception) == ("image is too small", None, False)
    assert oom.message == "out of memory on this device: try a smaller image"
    assert fault.message == "internal error ('boom'); the request was not completed"
    assert [r.getMessage() for r in caplog.records] == ["request failed"]


def test_the_page_says_when_nothing_can_be_served_or_shown(tmp_path):
    import json

    from rtsr.leaderboard import empty_leaderboard
    from rtsr.submissions.pool import ModelPool
    from rtsr.submissions.registry import Registry
    from space.settings import Settings
    from space.ui import Board, build_demo

    (tmp_path / "registry.json").write_text(json.dumps({"schema_version": 1, "entries": []}))
    pool = ModelPool(Registry.read(tmp_path / "registry.json"))
    board = Board(empty_leaderboard(), ["left out of the leaderboard: x.json: not a readable JSON file"])
    demo = build_demo(pool, board, Settings(), tmp_path, tmp_path / "inline")
    config = demo.get_config_file()
    texts = " ".join(str(c.get("props", {}).get("value", "")) for c in config["components"])
    assert "No registered model could be loaded" in texts
    assert "left out of the leaderboard: x.json" in texts
    assert "no results for this selection" in texts  # the empty figure's annotation
    assert not any(d.get("api_name") == "upscale" for d in config["dependencies"])


def test_the_leaderboard_tab_is_built_from_the_list_of_sources(tmp_path):
    import json

    from rtsr.leaderboard import EvaluationFolder, default_sources, load_leaderboard
    from rtsr.leaderboard.sources import EVALUATIONS_DIR
    from rtsr.submissions.pool import ModelPool
    from rtsr.submissions.registry import Registry
    from space.settings import Settings
    from space.ui import Board, build_demo

    results = tmp_path / "store" / "results" / "req-1"
    results.mkdir(parents=True)
    doc = json.loads((EVALUATIONS_DIR / "rtsrn-x2_Set5.json").read_text())
    url = "https://huggingface.co/team/fastnet/tree/0123456789abcdef"
    doc["submission"] = {"request": "req-1", "repo": "team/fastnet", "commit": "0123456789abcdef", "url": url}
    (results / "Set5.json").write_text(json.dumps(doc))
    (results / "Set14.json").write_text("{")  # half-written
    sources = [*default_sources(), EvaluationFolder("Submissions", tmp_path / "store" / "results", recursive=True)]
    frame, problems = load_leaderboard(sources)
    (tmp_path / "registry.json").write_text(json.dumps({"schema_version": 1, "entries": []}))
    pool = ModelPool(Registry.read(tmp_path / "registry.json"))
    board = Board(frame, [f"left out of the leaderboard: {p}" for p in problems], sources)
    config = build_demo(pool, board, Settings(), tmp_path, tmp_path / "inline").get_config_file()
    props = {c["props"].get("elem_id"): c["props"] for c in config["components"]}
    assert [value for _, value in props["lb-sources"]["choices"]] == [s.name for s in sources]
    assert props["lb-sources"]["value"] == [s.name for s in sources]
    texts = " ".join(str(c.get("props", {}).get("value", "")) for c in config["components"])
    assert f"left out of the leaderboard: {results / 'Set14.json'}: not a readable JSON file" in texts
    assert all(f"**{s.name}**: {s.description}" in texts for s in sources)
    # the first view is the official table's test set: no links there, so no Link column
    table = props["leaderboard-table"]["value"]
    assert ">Device</button>" in table and ">Link</button>" not in table
    # on Set5, the submission's row links to its repo at the commit measured
    from rtsr.leaderboard import filter_leaderboard, pareto_front
    from space.leaderboard_tab import table_html

    set5 = filter_leaderboard(frame, track=1, dataset="Set5")
    table = table_html(set5, pareto_front(set5, "score"), "score")
    assert f'<a href="{url}" target="_blank" rel="noopener">team/fastnet@0123456</a>' in table


def test_names_from_submissions_are_shown_as_text_in_the_table_and_the_details():
    import html

    from markdown_it import MarkdownIt

    from rtsr.leaderboard import filter_leaderboard, load_leaderboard, pareto_front
    from rtsr.leaderboard.details import RowDetails
    from space.leaderboard_tab import details_markdown, table_html

    frame, _ = load_leaderboard()
    hostile = '<img src=x onerror="alert(1)"> | **bold** [link](javascript:alert(1))'
    rows = filter_leaderboard(frame, track=1, dataset="Set5").assign(method=hostile, team=hostile)
    html_table = table_html(rows, pareto_front(rows, "score"), "score")
    assert "<img" not in html_table and "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in html_table
    details = details_markdown(RowDetails(hostile, "Submissions", "Set5", "cpu", "fp32", "eager", team=hostile))
    # rendered as the page renders Markdown: the name is text, in the heading and the facts
    rendered = MarkdownIt("commonmark").enable("table").render(details)
    assert "<img" not in rendered and "<strong>bold" not in rendered and "<a " not in rendered
    assert rendered.count(html.escape(hostile)) == 2


def test_model_names_are_shown_as_text_in_the_upscale_results():
    from dataclasses import replace

    from rtsr.serving import serve
    from rtsr.submissions.pool import ModelPool
    from rtsr.submissions.registry import BUNDLED_REGISTRY, Registry
    from space.upscale_tab import metrics_markdown, timing_markdown
    from tests.support.data import ROOT

    pool = ModelPool(Registry.read(BUNDLED_REGISTRY), "cpu")
    try:
        result = serve(pool, "bicubic-x2", ROOT / "examples" / "coffee.png", "simulate")
    finally:
        pool.close()
    hostile = replace(result, model=replace(result.model, name="![x](https://evil.example/t.png) <b>B</b>"))
    for text in (metrics_markdown(hostile, hostile), timing_markdown(hostile, 10.0, hostile)):
        assert "![x](" not in text and "<b>" not in text
        assert "\\!\\[x\\]" in text or "!\\[x\\]" in text


def test_the_sources_checkbox_remembers_what_the_page_unchecked(tmp_path):
    import json

    from rtsr.leaderboard import EvaluationFolder, default_sources, load_leaderboard
    from rtsr.leaderboard.sources import EVALUATIONS_DIR
    from space.leaderboard_tab import Board, _sources_for

    official, evaluated = "NTIRE 2023 (reported)", "rtsr evaluate"
    store = EvaluationFolder("Submissions", tmp_path / "results", recursive=True)
    sources = [*default_sources(), store]
    board = Board(load_leaderboard(sources)[0], [], sources)
    start = {"shown": [official, evaluated], "unchecked": []}
    # Track 1 with rtsr evaluate unchecked, then Track 2: still unchecked there
    chosen, state = _sources_for(board, 2, [official], start)
    assert chosen == [] and state == {"shown": [evaluated], "unchecked": [evaluated]}
    # back on Track 1: the official table is checked, rtsr evaluate still not
    chosen, state = _sources_for(board, 1, [], state)
    assert chosen == [official] and state["unchecked"] == [evaluated]
    # a submission's results arrive: the new source shows checked at the next refresh
    (tmp_path / "results" / "req-1").mkdir(parents=True)
    (tmp_path / "results" / "req-1" / "Set5.json").write_text((EVALUATIONS_DIR / "rtsrn-x2_Set5.json").read_text())
    board.reload()
    chosen, state = _sources_for(board, 1, [official], state)
    assert chosen == [official, "Submissions"] and state["shown"] == [official, evaluated, "Submissions"]
    # checked again: every source shows
    assert _sources_for(board, 1, state["shown"], state)[0] == state["shown"]
    assert json.dumps(state)  # a gr.State value the page keeps


def test_a_view_of_the_board_and_a_selected_row_without_a_server(tmp_path):
    import re

    import pandas as pd

    from rtsr.leaderboard import default_sources, load_leaderboard
    from space.leaderboard_tab import Board, render_view, selected_details

    sources = default_sources()
    board = Board(load_leaderboard(sources)[0], [], sources)
    names = [s.name for s in sources]
    figure, table, csv = render_view(board, 1, "Set5", names, "score", "runtime_ms", "rtsrn", True, tmp_path)
    rows = pd.read_csv(csv)
    assert Path(csv).parent == tmp_path and list(rows["method"]) == ["RTSRN x2"]  # the search narrows the CSV
    keys = re.findall(r'<tr data-key="([^"]+)"', table)
    assert len(keys) == 1
    assert any(trace.name == "rtsr evaluate" for trace in figure.data)
    # the row the table reports, with its per-image results; a key no longer there says so
    assert "baby" in selected_details(board, 1, "Set5", keys[0].replace("&quot;", '"').replace("&amp;", "&"))
    assert selected_details(board, 1, "Set5", "gone").startswith("*That row is no longer on the leaderboard")
