"""One leaderboard row in full: its per-image metrics and where and how it was measured, read
again from its results document (the frame keeps only the means).

The page shows this when a row of its table is selected; the official table has no documents,
so its rows say that the challenge published means only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import pandas as pd

from rtsr.errors import InputError, first_line
from rtsr.leaderboard.sources import Source
from rtsr.results.metrics import IMAGE_METRICS
from rtsr.results.schema import Evaluation

#: The per-image table's columns after ``image`` and the metrics: bicubic's PSNR on RGB and
#: the model's gain over it, in dB.
BICUBIC_PSNR_KEY = "bicubic_psnr_rgb"
GAIN_KEY = "psnr_gain"


@dataclass(frozen=True)
class RowDetails:
    """What the page shows for a selected row. Text fields are empty where unknown."""

    method: str
    source: str
    dataset: str
    device: str
    precision: str
    engine: str
    #: When the document was written (ISO 8601), and by which rtsr and torch.
    created: str = ""
    versions: str = ""
    #: The submission's repo on the Hub, the commit measured and the link to the repo at it.
    repo: str = ""
    commit: str = ""
    link: str = ""
    team: str = ""
    license: str = ""
    #: One row per image (``image``, the metrics of IMAGE_METRICS, bicubic's PSNR RGB and
    #: the gain); None when the row has none, and :attr:`note` says why.
    images: pd.DataFrame | None = None
    note: str = ""


def per_image(evaluation: Evaluation) -> pd.DataFrame:
    """The document's per-image metrics: ``image``, PSNR/SSIM on RGB and Y, bicubic's PSNR
    on RGB (:data:`BICUBIC_PSNR_KEY`) and the gain over it (:data:`GAIN_KEY`), in dB; one row
    per image in the document's order.

    Raises:
        InputError: the document holds no per-image results, or the model's and bicubic's
            images differ.
    """
    model = evaluation.images("metrics")
    bicubic = {image["name"]: image for image in evaluation.images("bicubic")}
    if [m["name"] for m in model] != list(bicubic):
        raise InputError(f"{evaluation.where}: the model's and bicubic's per-image results name different images")
    rows = []
    for image in model:
        reference = bicubic[image["name"]]["psnr_rgb"]
        rows.append(
            {
                "image": image["name"],
                **{m.key: image[m.key] for m in IMAGE_METRICS},
                BICUBIC_PSNR_KEY: reference,
                GAIN_KEY: image["psnr_rgb"] - reference,
            }
        )
    return pd.DataFrame(rows, columns=["image", *(m.key for m in IMAGE_METRICS), BICUBIC_PSNR_KEY, GAIN_KEY])


def row_details(row: pd.Series, sources: Sequence[Source]) -> RowDetails:
    """The details of one leaderboard ``row`` (as :func:`rtsr.leaderboard.load_leaderboard`
    gives), its document read again through the source it came from. Never raises for a
    document that is gone or broken: :attr:`RowDetails.note` says what happened."""
    known = RowDetails(
        method=str(row["method"]),
        source=str(row["source"]),
        dataset=str(row["dataset"]),
        device=str(row["device"]),
        precision=str(row["precision"]),
        engine=str(row["engine"]),
        team=str(row["team"]),
        license=str(row["license"]),
        link=str(row["link"]),
    )
    source = next((s for s in sources if s.name == known.source), None)
    if source is None:
        return replace(known, note=f"the source {known.source!r} is no longer loaded")
    try:
        evaluation = source.evaluation(str(row["document"]))
    except InputError as e:
        return replace(known, note=first_line(e))
    document = evaluation.document
    submission = evaluation.submission
    tools = (("rtsr", "rtsr_version"), ("torch", "torch_version"))
    versions = ", ".join(f"{name} {document[key]}" for name, key in tools if key in document)
    try:
        images, note = per_image(evaluation), ""
    except InputError as e:
        images, note = None, first_line(e)
    return replace(
        known,
        created=evaluation.text("created"),
        versions=versions,
        repo=submission.repo if submission else "",
        commit=submission.commit if submission else "",
        images=images,
        note=note,
    )
