import csv
import math

import pytest

from rtsr.scoring import score
from tests.conftest import ROOT, SHARED

TABLE = ROOT / "leaderboard" / "ntire23_track1_final.csv"


def _rows(path):
    with path.open() as f:
        return list(csv.DictReader(f))


def test_shipped_table_is_the_official_one():
    official = SHARED / "leaderboard" / "ntire23_track1_final.csv"
    if not official.exists():
        pytest.skip(f"{official} not found")
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
