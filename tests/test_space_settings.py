"""space.settings: flags over environment variables over defaults."""

from pathlib import Path

import pytest

from rtsr.submissions.registry import BUNDLED_REGISTRY
from space.settings import DEFAULT_LEADERBOARD_DIR, Settings, parse_settings
from tests.support.app import APP_SETTINGS
from tests.support.data import ROOT


def test_defaults_are_the_bundled_registry_and_leaderboard_on_localhost():
    settings = parse_settings([], environ={})
    assert settings == Settings()
    assert (settings.host, settings.port, settings.max_input_pixels, settings.device) == ("127.0.0.1", 7860, None, None)
    assert settings.registry == BUNDLED_REGISTRY and settings.registry.is_file()
    assert settings.leaderboard_dir == DEFAULT_LEADERBOARD_DIR and (settings.leaderboard_dir / "evaluations").is_dir()
    assert settings.concurrency == 1


def test_environment_variables_set_what_flags_do_not():
    env = {
        "RTSR_HOST": "0.0.0.0",
        "RTSR_PORT": "9000",
        "RTSR_MAX_INPUT_PIXELS": "2073600",
        "RTSR_REGISTRY": "/srv/registry.json",
        "RTSR_LEADERBOARD_DIR": "/srv/board",
        "RTSR_DEVICE": "cpu",
        "RTSR_CONCURRENCY": "2",
        "RTSR_QUEUE_SIZE": "5",
        "RTSR_MAX_FILE_SIZE": "10mb",
        "RTSR_TEMP_DIR_SIZE": "500MB",
        "RTSR_TEMP_FILE_AGE": "600",
        "RTSR_STORE": "/data/store",
        "RTSR_DAILY_LIMIT": "5",
        "RTSR_REFRESH": "30",
        "RTSR_WORKER": "local",
        "RTSR_MAX_LIVE_MODELS": "2",
    }
    settings = parse_settings([], environ=env)
    assert settings == Settings(
        host="0.0.0.0",
        port=9000,
        max_input_pixels=1920 * 1080,
        registry=Path("/srv/registry.json"),
        leaderboard_dir=Path("/srv/board"),
        device="cpu",
        concurrency=2,
        queue_size=5,
        max_file_size="10mb",
        temp_dir_size="500mb",
        temp_file_age=600,
        store="/data/store",
        daily_limit=5,
        refresh=30,
        worker="local",
        max_live_models=2,
    )
    assert (settings.max_file_bytes, settings.temp_dir_bytes) == (10 * 1024**2, 500 * 1024**2)  # as Gradio counts
    flags = parse_settings(["--port", "9100", "--max-input-pixels", "1000", "--registry", "r.json"], environ=env)
    assert (flags.port, flags.max_input_pixels, flags.registry) == (9100, 1000, Path("r.json"))
    assert flags.host == "0.0.0.0"  # still from the environment


def test_gradio_s_own_variables_are_honoured_after_ours():
    spaces_env = {"GRADIO_SERVER_NAME": "0.0.0.0", "GRADIO_SERVER_PORT": "7861"}
    assert (parse_settings([], environ=spaces_env).host, parse_settings([], environ=spaces_env).port) == (
        "0.0.0.0",
        7861,
    )
    both = {**spaces_env, "RTSR_PORT": "8000"}
    assert parse_settings([], environ=both).port == 8000


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--port", "0"], {}, "expected a number >= 1, got 0"),
        ([], {"RTSR_MAX_INPUT_PIXELS": "lots"}, "expected a whole number, got 'lots'"),
        (["--device", "tpu"], {}, "invalid choice: 'tpu'"),
        (["--max-file-size", "50 megs"], {}, "expected a size such as 512MB or 8GB, got '50 megs'"),
        ([], {"RTSR_TEMP_DIR_SIZE": "0gb"}, "expected a size such as 512MB or 8GB, got '0gb'"),
        (["--temp-dir-size", "100mb"], {}, "--temp-dir-size 100mb must hold at least 3 uploads of --max-file-size"),
        (["--temp-file-age", "0"], {}, "expected a number >= 1, got 0"),
    ],
)
def test_bad_values_exit_with_argparse_s_usage_error(argv, env, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        parse_settings(argv, environ=env)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_the_docs_document_every_setting():
    page = (ROOT / "docs" / "app.md").read_text()
    for flag, variable in APP_SETTINGS:
        assert f"| `{flag}` | `{variable}`" in page, flag
    assert len(Settings.__dataclass_fields__) == len(APP_SETTINGS)  # a new one needs a row there and here
