import dataclasses
import math

import pandas as pd
import pytest

from rtsr.leaderboard.columns import COLUMNS, column, empty_leaderboard
from rtsr.metrics import ImageMetrics
from rtsr.results.metrics import IMAGE_METRICS, METRICS, metric
from rtsr.results.schema import FIELDS
from tests.support.data import ROOT

EXPECTED_KEYS = [
    "track",
    "scale",
    "method",
    "team",
    "source",
    "dataset",
    "device",
    "precision",
    "engine",
    "device_type",
    "score",
    "psnr_rgb",
    "ssim_rgb",
    "psnr_y",
    "ssim_y",
    "psnr_gain",
    "runtime_ms",
    "relative_runtime",
    "fps",
    "params_m",
    "flops_g",
    "license",
    "link",
    "is_reference",
    "ranked",
    "model_id",
    "document",
]


def assert_leaderboard_dtypes(df):
    """``df`` has exactly the columns of COLUMNS, in order, each of its kind's dtype."""
    assert list(df.columns) == EXPECTED_KEYS
    for c in COLUMNS:
        dtype = df[c.key].dtype
        if c.kind in ("str", "url"):
            assert pd.api.types.is_string_dtype(dtype), (c.key, dtype)
        else:
            assert dtype.kind == {"int": "i", "float": "f", "bool": "b"}[c.kind], (c.key, dtype)


def test_columns_are_named_once_in_display_order():
    assert [c.key for c in COLUMNS] == EXPECTED_KEYS
    assert len({c.label for c in COLUMNS}) == len(COLUMNS)
    assert all(c.label and c.description for c in COLUMNS)
    assert column("psnr_gain").kind == "float"
    with pytest.raises(KeyError, match="nope"):
        column("nope")
    assert_leaderboard_dtypes(empty_leaderboard())


def test_the_metrics_are_the_columns_between_identity_and_submission():
    keys = [c.key for c in COLUMNS]
    first = keys.index(METRICS[0].key)
    assert keys[first : first + len(METRICS)] == [m.key for m in METRICS]
    for m in METRICS:
        c = column(m.key)
        assert (c.label, c.kind, c.description) == (m.label, "float", m.description)
        assert metric(m.key) is m
    with pytest.raises(KeyError, match="no metric 'method'"):
        metric("method")


def test_the_page_shows_who_where_and_the_metrics():
    shown = [c.key for c in COLUMNS if c.shown]
    # the track and the test set are the page's selection; the others are for code
    hidden = ["track", "scale", "dataset", "device_type", "is_reference", "ranked", "model_id", "document"]
    assert [c.key for c in COLUMNS if not c.shown] == hidden
    # each row says which device measured it, and links to the submission it measured
    assert {"method", "team", "device", "precision", "license", "link"} <= set(shown)
    assert column("link").kind == "url"


def test_each_metric_reads_a_field_of_the_schema():
    for m in METRICS:
        assert m.field in FIELDS, m.key
        assert FIELDS[m.field] in ("number", "number or null"), m.key
        assert m.label.startswith(m.name) and (m.unit in m.label)
        assert format(1.5, m.fmt)  # a valid format spec
    assert {m.key for m in METRICS if m.on_card} >= {"score", "psnr_rgb", "ssim_rgb", "runtime_ms"}


def test_per_image_metrics_are_those_rtsr_metrics_measures():
    assert [m.key for m in IMAGE_METRICS] == [f.name for f in dataclasses.fields(ImageMetrics)]
    for m in IMAGE_METRICS:
        assert m.field == f"metrics.mean.{m.key}" and m.reference_field == f"bicubic.mean.{m.key}"
    assert metric("score").reference_field is None


def test_which_way_is_better():
    better = {m.key: m.higher_is_better for m in METRICS}
    assert better["score"] and better["psnr_rgb"] and better["ssim_y"] and better["fps"]
    assert not (better["runtime_ms"] or better["relative_runtime"] or better["params_m"] or better["flops_g"])


def test_values_for_people():
    psnr, gain, score = metric("psnr_rgb"), metric("psnr_gain"), metric("score")
    assert psnr.text(35.02) == "35.0200" and psnr.decimals == 4
    assert gain.text(1.1) == "+1.1000" and gain.decimals == 4
    assert score.text(24.13) == "24.13" and metric("fps").text(313.48) == "313.5"
    assert psnr.text(math.inf) == "inf" and gain.text(-math.inf) == "-inf"
    assert metric("ssim_y").text(math.nan) == "—"


def test_the_docs_document_every_column_and_metric():
    page = (ROOT / "docs" / "app.md").read_text()
    for c in COLUMNS:
        assert f"| `{c.key}` | {c.label} | {c.description} |" in page, c.key
    for m in METRICS:
        better = "higher" if m.higher_is_better else "lower"
        assert f"| `{m.key}` | `{m.field}` | `{m.fmt}` | {better} |" in page, m.key
