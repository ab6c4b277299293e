"""The Hugging Face Hub: fetching a pinned submission, and publishing one with a model card.

Everything goes through ``huggingface_hub`` and its cache; with ``HF_HUB_OFFLINE=1`` only
what is already cached is used, and publishing says plainly that it cannot reach the Hub.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rtsr.errors import SubmissionError, first_line
from rtsr.submissions.layout import ARCH_FILE

if TYPE_CHECKING:
    from huggingface_hub import EvalResult

    from rtsr.results import Evaluation

logger = logging.getLogger(__name__)

#: Tags on every model card we write, so the Hub can list challenge submissions.
CARD_TAGS = ["ntire-2023", "real-time-super-resolution", "super-resolution", "image-to-image", "rtsr"]


def _check_repo_id(repo_id: str) -> None:
    """Refuse what huggingface_hub's validator refuses (``../x``, ``-a/b``), in one line,
    before the cache or the Hub is asked about it."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        raise SubmissionError(f"{repo_id!r} is not a Hub repo id (org/name: letters, digits, '-', '_', '.')") from None


def download(repo_id: str, revision: str) -> Path:
    """The local folder of ``repo_id`` at commit ``revision``, from the Hub cache or the Hub.

    Raises:
        SubmissionError: the repo or revision cannot be had (offline and not cached, not
            found, no access), in one line.
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled

    _check_repo_id(repo_id)
    try:
        return Path(snapshot_download(repo_id, revision=revision, repo_type="model"))
    except (LocalEntryNotFoundError, OfflineModeIsEnabled):
        raise SubmissionError(
            f"{repo_id}@{revision}: not in the local Hub cache and the Hub cannot be reached"
        ) from None
    except HfHubHTTPError as e:
        raise SubmissionError(f"{repo_id}@{revision}: {first_line(e)}") from None


def publish_folder(folder: Path, repo_id: str, private: bool, token: str | None = None) -> str:
    """Create ``repo_id`` if needed and upload ``folder`` as one commit; return its hash.

    Raises:
        SubmissionError: offline, no token, no permission, or any other Hub refusal.
    """
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, LocalTokenNotFoundError, OfflineModeIsEnabled

    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, private=private, repo_type="model", exist_ok=True)
        commit = api.upload_folder(
            repo_id=repo_id, folder_path=folder, repo_type="model", commit_message="Upload submission with rtsr"
        )
    except OfflineModeIsEnabled:
        raise SubmissionError("cannot publish: HF_HUB_OFFLINE is set, so the Hub is not reachable") from None
    except LocalTokenNotFoundError:
        raise SubmissionError("cannot publish: no Hugging Face token (run `hf auth login` or set HF_TOKEN)") from None
    except (HfHubHTTPError, OSError) as e:
        raise SubmissionError(f"cannot publish to {repo_id}: {first_line(e)}") from None
    return str(commit.oid)


def model_card(meta: dict[str, Any], repo_id: str, evaluation: dict[str, Any] | None) -> str:
    """README.md for the Hub: YAML metadata (tags, license, scale, and the results as the
    card's ``model-index``) and what was measured.

    ``evaluation`` is an ``rtsr evaluate`` document. Each metric of the specification
    (:data:`rtsr.leaderboard.METRICS`) marked ``on_card`` becomes one ``EvalResult`` (task
    ``image-to-image``, the test set, the metric's key, label and value) with the device and
    precision that measured it (``dataset.args``), and the text gives every metric with the
    device. Without one the card says nothing was measured.

    Raises:
        InputError: ``evaluation`` is not a valid ``rtsr.evaluate`` v1 document.
    """
    from huggingface_hub import ModelCard, ModelCardData

    from rtsr.results import Evaluation

    scale, track = meta["scale"], meta["track"]
    checked = Evaluation.from_document(evaluation, "the evaluation document") if evaluation else None
    data = ModelCardData(
        license=meta.get("license") or "other",
        tags=[*CARD_TAGS, f"x{scale}"],
        pipeline_tag="image-to-image",
        model_name=meta.get("method") or repo_id.split("/")[-1],
        eval_results=eval_results(checked) if checked else None,
        rtsr={"scale": scale, "track": track, "team": meta.get("team", "")},
    )
    lines = [
        f"# {meta.get('method') or repo_id}",
        "",
        f"A submission to the NTIRE 2023 Real-Time Super-Resolution challenge, Track {track} "
        f"(x{scale}, {'1080p' if scale == 2 else '720p'} to 4K), by {meta.get('team') or 'its authors'}.",
        "",
        f"- Training data: {meta.get('training_data') or 'not stated'}",
        f"- License: {meta.get('license') or 'not stated'}",
    ]
    lines += [f"- {name}: {url}" for name, url in meta.get("links", {}).items()]
    lines += ["", "## Measured", ""]
    if checked:
        lines += _measured(checked)
    else:
        lines.append("Nothing measured yet: run `python -m rtsr evaluate` and publish with `--eval`.")
    lines += [
        "",
        "## Use",
        "",
        "```bash",
        f"python -m rtsr sr --model {repo_id}@<commit> --lr-dir LR --out-dir SR",
        "```",
    ]
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines) + "\n"))


def eval_results(evaluation: Evaluation) -> list[EvalResult]:
    """The model card's ``model-index`` entries of a checked document: one per metric of the
    specification marked ``on_card``, its value as the document gives it, the device and
    precision that measured it in ``dataset_args`` (runtimes and scores are the device's)."""
    from huggingface_hub import EvalResult

    from rtsr.results import METRICS

    return [
        EvalResult(
            task_type="image-to-image",
            task_name=f"Super-resolution x{evaluation.scale} (NTIRE 2023 RTSR Track {evaluation.track})",
            dataset_type=evaluation.dataset,
            dataset_name=evaluation.dataset,
            dataset_args={"device": evaluation.device, "precision": evaluation.precision},
            metric_type=m.key,
            metric_name=m.label,
            metric_value=m.read(evaluation),
        )
        for m in METRICS
        if m.on_card
    ]


def offer_results(
    repo_id: str, revision: str, documents: dict[str, dict[str, Any]], request: str, board_url: str | None = None
) -> str:
    """Open a pull request on a participant's model repo that adds an evaluation's results
    to its card's ``model-index`` (``metadata_update(..., create_pr=True)``): the pattern by
    which the Hub's leaderboards put results on model pages without write access to them.
    The PR says which request and commit were measured, and links the board. Returns its URL.

    Raises:
        huggingface_hub.errors.HfHubHTTPError: the Hub refused it (discussions closed, no
            permission) or failed.
        ValueError: the card's metadata cannot take the results.
    """
    from huggingface_hub import metadata_update
    from huggingface_hub.repocard_data import eval_results_to_model_index

    from rtsr.results import Evaluation

    results, name = [], repo_id.split("/")[-1]
    for set_name, document in documents.items():
        checked = Evaluation.from_document(document, f"{request}/{set_name}")
        results += eval_results(checked)
        name = checked.text("model.name") or name
    where = f"[the leaderboard]({board_url})" if board_url else "the leaderboard"
    description = (
        f"The rtsr worker evaluated `{repo_id}` at commit {revision} (request {request}) and put its results"
        f" on {where}. This pull request adds them to the model card's `model-index`, so that the Hub shows"
        " them on the model's page; merge it if you want them there."
    )
    info = metadata_update(
        repo_id,
        {"model-index": eval_results_to_model_index(name, results)},
        overwrite=True,
        commit_message=f"Add the rtsr leaderboard's results (request {request})",
        commit_description=description,
        create_pr=True,
    )
    return str(info)


def _measured(evaluation: Evaluation) -> list[str]:
    """The card's text of what was measured: the per-image metrics of the model and of
    bicubic, then the others, each as the specification prints it."""
    from rtsr.results import IMAGE_METRICS, METRICS

    def row(cells: list[str]) -> str:
        return "|" + "|".join(f" {cell} " if cell else " " for cell in cells) + "|"

    def rule(columns: int) -> str:
        return "|" + "---|" * columns

    others = [m for m in METRICS if not m.per_image]
    bicubic = [m.text(evaluation.number(m.reference_field or m.field)) for m in IMAGE_METRICS]
    return [
        f"On {evaluation.dataset} ({evaluation.integer('dataset.images')} images, the challenge's degradation), "
        f"measured by `rtsr evaluate` {evaluation.text('rtsr_version')} on {evaluation.device} "
        f"in {evaluation.precision.upper()}; runtime for one 4K output, "
        f"{evaluation.integer('runtime.runtime.passes')} passes ({evaluation.text('runtime.timer')}):",
        "",
        row(["", *(m.label for m in IMAGE_METRICS)]),
        rule(len(IMAGE_METRICS) + 1),
        row(["this model", *(m.text(m.read(evaluation)) for m in IMAGE_METRICS)]),
        row(["bicubic", *bicubic]),
        "",
        row([m.label for m in others]),
        rule(len(others)),
        row([m.text(m.read(evaluation)) for m in others]),
    ]


def resolve(repo_id: str, revision: str | None = None) -> str:
    """The full commit hash ``revision`` (default: the main branch) of ``repo_id`` names,
    after checking that it holds an ``arch.py`` at that commit.

    Online this asks the Hub (``HfApi.model_info``); with ``HF_HUB_OFFLINE=1`` it reads the
    local Hub cache, whose ``refs/`` record what a branch pointed at when it was fetched.

    Raises:
        SubmissionError: the repo or revision does not exist (or cannot be reached), or it
            holds no ``arch.py``.
    """
    import huggingface_hub.constants as constants
    from huggingface_hub import HfApi, try_to_load_from_cache
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

    where = f"{repo_id}@{revision}" if revision else repo_id
    _check_repo_id(repo_id)
    if revision is not None and (".." in revision or revision.startswith("/")):
        raise SubmissionError(f"{where}: not a revision (a branch, tag or commit)")
    if constants.HF_HUB_OFFLINE:
        cached = try_to_load_from_cache(repo_id, ARCH_FILE, revision=revision or "main", repo_type="model")
        if not isinstance(cached, str):
            raise SubmissionError(f"{where}: not found in the local Hub cache (offline), or it holds no {ARCH_FILE}")
        return Path(cached).parent.name
    try:
        info = HfApi().model_info(repo_id, revision=revision, files_metadata=False)
    except RepositoryNotFoundError:
        raise SubmissionError(f"{repo_id}: no such model repository on the Hub (or it is private)") from None
    except RevisionNotFoundError:
        raise SubmissionError(f"{where}: no such revision") from None
    except HfHubHTTPError as e:
        raise SubmissionError(f"{where}: {first_line(e)}") from None
    if not any(s.rfilename == ARCH_FILE for s in info.siblings or []):
        raise SubmissionError(f"{where}: not a submission (no {ARCH_FILE} at its top level)")
    return str(info.sha)
