import csv
import math

import pytest

from rtsr.scoring import psnr_for_score, score
from tests.support.data import ROOT, SHARED, needs_shared

TABLE = ROOT / "leaderboard" / "ntire23_track1_final.csv"


def _rows(path):
    with path.open() as f:
        return list(csv.DictReader(f))


def test_shipped_table_is_the_official_one():
    official = needs_shared(SHARED / "leaderboard" / "ntire23_track1_final.csv")
    assert TABLE.read_bytes() == official.read_bytes()


def test_recomputes_every_official_score_within_rounding():
    rows = _rows(TABLE)
    bicubic = next(r for r in rows if r["team"] == "Bicubic")
    teams = [r for r in rows if r["score"]]
    assert len(teams) == 24
    for row in teams:
        psnr, runtime = float(row["psnr_rgb"]), float(row["runtime_ms"])
        ours = score(psnr, runtime, float(bicubic["psnr_rgb"]))
        # The table rounds both PSNRs to 0.01 dB, so the gain is known to +-0.01 dB:
        # a factor of 2**0.01 (0.7 %) either way, plus the score's own rounding.
        bound = ours * (2**0.01 - 1) + 0.005
        assert abs(ours - float(row["score"])) <= bound, (row["team"], ours, row["score"])


def test_formula_by_hand():
    # 1 dB over bicubic at 4 ms: 2**1 * 2 / (0.1 * 2) = 20
    assert score(31.0, 4.0, 30.0) == pytest.approx(20.0)
    # each extra dB doubles the score; 4x the runtime halves it
    assert score(32.0, 4.0, 30.0) == pytest.approx(40.0)
    assert score(31.0, 16.0, 30.0) == pytest.approx(10.0)


def test_zero_when_not_above_bicubic():
    assert score(30.0, 1.0, 30.0) == 0.0
    assert score(29.0, 1.0, 30.0) == 0.0


@pytest.mark.parametrize("runtime", [0.0, -1.0, math.nan, math.inf])
def test_bad_runtime_is_refused(runtime):
    with pytest.raises(ValueError, match="runtime"):
        score(31.0, runtime, 30.0)


# --- psnr_for_score -----------------------------------------------------------------------------


def test_psnr_for_score_by_hand():
    # 1 dB over bicubic at 4 ms: 2 * 2**1 / (0.1 * 2) = 20
    assert psnr_for_score(20.0, 4.0, 0.0) == pytest.approx(1.0)
    assert psnr_for_score(40.0, 4.0, 30.0) == pytest.approx(32.0)
    assert psnr_for_score(10.0, 16.0, 30.0) == pytest.approx(31.0)
    # score 10 at 1 ms needs no gain at all: 2 * 2**0 / (0.1 * 1) = 20 > 10, so below bicubic
    assert psnr_for_score(10.0, 1.0, 30.0) == pytest.approx(29.0)


def test_psnr_for_score_recovers_the_official_psnr():
    # Noah TerminalVision: 24.13 at 3.19 ms over bicubic's 33.92 dB, reported 35.02 dB; the
    # table rounds the PSNRs to 0.01 dB and the score to 0.01.
    assert psnr_for_score(24.13, 3.19, 33.92) == pytest.approx(35.02, abs=0.011)


@pytest.mark.parametrize("runtime", [0.3, 1.0, 3.19, 17.0, 92.79, 8681.0])
@pytest.mark.parametrize("level", [0.5, 2.0, 24.13, 100.0])
def test_psnr_for_score_round_trips_through_score(runtime, level):
    psnr = psnr_for_score(level, runtime, 33.92)
    if psnr > 33.92:
        assert score(psnr, runtime, 33.92) == pytest.approx(level, rel=1e-12)
    else:
        # unreachable: any gain at this runtime scores more than the level
        assert score(33.92 + 1e-9, runtime, 33.92) > level


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        ((0.0, 4.0, 30.0), "score"),
        ((-1.0, 4.0, 30.0), "score"),
        ((math.inf, 4.0, 30.0), "score"),
        ((20.0, 0.0, 30.0), "runtime"),
        ((20.0, math.nan, 30.0), "runtime"),
        ((20.0, 4.0, math.nan), "PSNR"),
    ],
)
def test_psnr_for_score_refuses_bad_arguments(args, needle):
    with pytest.raises(ValueError, match=needle):
        psnr_for_score(*args)
