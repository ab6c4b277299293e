"""``python app.py`` that cannot start says why in one line and exits 1, before anything is
served (the app's own tests, tests/test_app.py, start it for real)."""

from __future__ import annotations

import signal

import pytest


def test_an_app_that_cannot_start_says_why_in_one_line(capsys, monkeypatch):
    import app

    # main() ends on SIGTERM as on Ctrl-C: its handler is this test's alone
    monkeypatch.setattr(signal, "signal", lambda *_: None)
    assert app.main(["--store", "hf://models/org/name"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: 'hf://models/org/name': a store on the Hub is named hf://datasets/ORG/NAME"]


def test_a_bad_setting_is_argparses_one_line(capsys):
    import app

    with pytest.raises(SystemExit) as exit_:
        app.main(["--temp-dir-size", "1mb"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "python app.py: error: --temp-dir-size 1mb must hold at least 3 uploads of --max-file-size 50mb"
    )
