"""The Hugging Face Hub: fetching a pinned submission, and publishing one with a model card.

Everything goes through ``huggingface_hub`` and its cache; with ``HF_HUB_OFFLINE=1`` only
what is already cached is used, and publishing says plainly that it cannot reach the Hub.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from rtsr.errors import SubmissionError, first_line

logger = logging.getLogger(__name__)

#: Tags on every model card we write, so the Hub can list challenge submissions.
CARD_TAGS = ["ntire-2023", "real-time-super-resolution", "super-resolution", "image-to-image", "rtsr"]


def download(repo_id: str, revision: str) -> Path:
    """The local folder of ``repo_id`` at commit ``revision``, from the Hub cache or the Hub.

    Raises:
        SubmissionError: the repo or revision cannot be had (offline and not cached, not
            found, no access), in one line.
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled

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
    """README.md for the Hub: YAML metadata (tags, license, scale) and what was measured.

    ``evaluation`` is an ``rtsr evaluate`` document; its numbers go in with the device that
    measured them. Without one the card says nothing was measured.
    """
    from huggingface_hub import ModelCard, ModelCardData

    scale, track = meta["scale"], meta["track"]
    data = ModelCardData(
        license=meta.get("license") or "other",
        tags=[*CARD_TAGS, f"x{scale}"],
        pipeline_tag="image-to-image",
        model_name=meta.get("method") or repo_id.split("/")[-1],
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
    if evaluation:
        m, b, rt = evaluation["metrics"]["mean"], evaluation["bicubic"]["mean"], evaluation["runtime"]
        lines += [
            f"On {evaluation['dataset']['name']} ({evaluation['dataset']['images']} images, the challenge's "
            f"degradation), measured by `rtsr evaluate` {evaluation['rtsr_version']} on {evaluation['device']} "
            f"in {evaluation['precision'].upper()}:",
            "",
            "| | PSNR RGB | SSIM RGB | PSNR Y | SSIM Y |",
            "|---|---|---|---|---|",
            f"| this model | {m['psnr_rgb']:.3f} | {m['ssim_rgb']:.4f} | {m['psnr_y']:.3f} | {m['ssim_y']:.4f} |",
            f"| bicubic | {b['psnr_rgb']:.3f} | {b['ssim_rgb']:.4f} | {b['psnr_y']:.3f} | {b['ssim_y']:.4f} |",
            "",
            f"Runtime for one 4K output: {rt['runtime']['mean_ms']:.3f} ms mean over {rt['runtime']['passes']} passes "
            f"({rt['timer']}), {rt['relative_to_bicubic']:.2f}x bicubic on the same device; "
            f"{evaluation['model']['params']:,} parameters, {evaluation['model']['flops'] / 1e9:.2f} GFLOPs; "
            f"score {evaluation['score']:.3f}.",
        ]
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
