"""The app's prose: the challenge, its tracks and score, and the participant's path.

Numbers come from :mod:`rtsr.constants`, so the page cannot drift from the code that scores.
"""

from __future__ import annotations

import os

from rtsr.constants import (
    FPS_BANDS,
    JPEG_QUALITY,
    SCORE_NUMERATOR,
    SCORE_RUNTIME_FACTOR,
    TARGET_SIZE,
    TIMED_PASSES,
    TRACK_SCALES,
    WARMUP_PASSES,
)

TITLE = "Real-Time Super-Resolution Space"

#: The prose's styles: code blocks wrap rather than run off a phone's screen.
CSS = """
.prose pre, .prose pre code { white-space: pre-wrap; overflow-wrap: anywhere; }
"""

_TRACK_LINES = "\n".join(
    f"- **Track {track}**: x{scale}, {TARGET_SIZE[1] // scale}x{TARGET_SIZE[0] // scale} → "
    f"{TARGET_SIZE[1]}x{TARGET_SIZE[0]} (4K UHD)"
    for track, scale in TRACK_SCALES.items()
)
_BANDS = ", ".join(f"{fps} FPS = {1000 / fps:.1f} ms" for fps in FPS_BANDS)

INTRO = f"""\
# {TITLE}
Try the models of the **NTIRE 2023 Real-Time Super-Resolution** challenge on your image, measure
them, and compare every entry on the leaderboard.
"""

LEADERBOARD_NOTE = """\
How to read it: every row names the device and precision that measured it; milliseconds from
different devices do not compare, **× bicubic** (the runtime over bicubic's on the same device)
does. **Stars** mark the **Pareto front**: no other row is both at least as fast and at least as
good. The green **FPS bands** shade runtimes of 60, 30 and 24 frames per second and more: the
challenge's real-time targets on its GPU, drawn only against GPU rows. In PSNR mode the dotted
**score lines** join the runtimes and PSNRs that earn the same score. Scores of runs timed on a
CPU are far below the official ones and say nothing about a GPU.
"""


def about_links(space_id: str | None) -> str:
    """The About tab's links: the challenge, its code and report, this Space's code (on a
    Space, ``SPACE_ID`` names it), the Hub, and the way onto the leaderboard."""
    code = (
        f"[huggingface.co/spaces/{space_id}](https://huggingface.co/spaces/{space_id}/tree/main)"
        if space_id
        else "the repository this app runs from (its docs/participants-guide.md is the guide)"
    )
    return f"""\
## Links
- **The challenge**: the [NTIRE 2023 workshop]({NTIRE_URL}) at CVPR 2023, and its CodaLab pages for
  [Track 1]({CODALAB_URLS[1]}) and [Track 2]({CODALAB_URLS[2]}).
- **The organizers' code**: [eduardzamfir/NTIRE23-RTSR]({ORGANIZERS_REPO}) (the degradation,
  the metric script, the submission layout).
- **The report**: *Efficient Deep Models for Real-Time 4K Image Super-Resolution. NTIRE 2023
  Benchmark and Report*, Conde, Zamfir, Timofte et al., CVPR Workshops 2023
  ([CVF open access]({REPORT_INDEX_URL})).
- **This Space's code**: {code}.
- **The Hugging Face Hub**: [make a model repo](https://huggingface.co/new) and
  [an access token](https://huggingface.co/settings/tokens) to publish your submission.
- **Getting on the leaderboard**: the six steps above, the last in the **Submit** tab.
"""


#: Where the challenge lives (from the organizers' README).
NTIRE_URL = "https://cvlai.net/ntire/2023/"
CODALAB_URLS = {
    1: "https://codalab.lisn.upsaclay.fr/competitions/10227",
    2: "https://codalab.lisn.upsaclay.fr/competitions/10228",
}
ORGANIZERS_REPO = "https://github.com/eduardzamfir/NTIRE23-RTSR"
#: The NTIRE 2023 workshop's papers at the CVF, the report among them.
REPORT_INDEX_URL = "https://openaccess.thecvf.com/CVPR2023_workshops/NTIRE"


ABOUT = f"""\
## The challenge
NTIRE 2023 Real-Time Super-Resolution (Conde et al., CVPR Workshops 2023) asked for models
that upscale video frames to 4K in real time on a consumer GPU:

{_TRACK_LINES}

Inputs were made from 4K ground truths by bicubic downscaling and JPEG compression at
quality {JPEG_QUALITY}. Quality is PSNR on RGB against the ground truth, in dB. Runtime is the mean
of {TIMED_PASSES} FP16 forward passes at the 4K output size, after {WARMUP_PASSES} warm-up passes, timed with
CUDA events on an NVIDIA RTX 3090.

## The score
```
if PSNR > PSNR_bicubic:
    score = {SCORE_NUMERATOR:g} · 2^(PSNR − PSNR_bicubic) / ({SCORE_RUNTIME_FACTOR:g} · √runtime_ms)
else:
    score = 0
```
One rule, two cases: a method not above bicubic's PSNR scores 0, however fast, and any gain at
all scores the formula, which starts at {SCORE_NUMERATOR / SCORE_RUNTIME_FACTOR:g} / √runtime_ms (so the
score jumps at bicubic's PSNR). Above it, each dB gained doubles the score and halving the
runtime multiplies it by √2. PSNR is over the whole test set, the runtime FP16 on the
challenge's GPU at 4K: a score of one image on another device says little. The leaderboard's
frame-rate bands: {_BANDS}.

## Submit a model
Everything below runs with the `rtsr` command-line tool of this Space's repository
(`pip install -r requirements.txt`), from the repository's folder, on a submission folder
`my_team` in the challenge's layout: `arch.py` defining `srmodel()`, the weights
(`.safetensors`, or a `.pth` loadable with `weights_only=True`) and `submission.json` (team,
method, scale). `python -m rtsr --help` lists every command.

1. **Make a test set** with the challenge's degradation, from the bundled Set5:
   ```
   python -m rtsr prepare-data --image-dir testsets/Set5 --lr-out-dir set5/lr_x2 \\
       --gt-out-dir set5/gt_x2 --downsample-factor 2
   ```
2. **Write `results/` and validate**: the checks run your code in a sandbox, without network
   and with limits on time, memory and processes (imports, output size and range, FP16
   fidelity, `torch.export`, and the reproduction of your `results/`):
   ```
   python -m rtsr sr --model my_team --lr-dir set5/lr_x2 --out-dir my_team/results
   python -m rtsr validate my_team --lr-dir set5/lr_x2
   ```
3. **Evaluate** it: PSNR and SSIM against bicubic, and the runtime (`--repeat 10 --warmup 2`
   shortens the timing for a first look; without them it is the challenge's
   {WARMUP_PASSES} + {TIMED_PASSES} passes):
   ```
   python -m rtsr evaluate --model my_team --lr-dir set5/lr_x2 --gt-dir set5/gt_x2 \\
       --dataset Set5 --out my_team_set5.json --repeat 10 --warmup 2
   ```
4. **Pack** it as the challenge's `submission_my_team.zip` (the **Submit** tab's *Check my
   zip* runs the checklist on it here):
   ```
   python -m rtsr pack my_team
   ```
5. **Publish** it to the Hugging Face Hub with its model card and results (log in first with
   `hf auth login`; add `--dry-run` to see what would be uploaded):
   ```
   python -m rtsr publish my_team --repo-id my-team/espcn-x2 --eval my_team_set5.json
   ```
6. **Submit** the repo in the **Submit** tab (sign in with Hugging Face, enter `org/name`,
   pick the track), or from the command line:
   ```
   python -m rtsr submit my-team/espcn-x2 --track 1
   ```
   The request is pinned to the repo's commit at that moment. A worker downloads that
   commit, runs the checklist in the sandbox and evaluates it on the Space's test set; your
   code sees the degraded inputs only, never the ground truth. A passing submission appears
   on the leaderboard, linked to the commit measured, and in the Upscale tab, where it runs in
   a sandboxed process of its own.

""" + about_links(os.environ.get("SPACE_ID"))

SUBMIT_INTRO = """\
## Submit a model for evaluation
Publish your submission to the [Hugging Face Hub](https://huggingface.co/new) first
(`python -m rtsr publish`; the About tab has every step and the challenge's links),
then sign in and enter its repo. The request is pinned to the repo's current commit (or the
one you name with `@<commit>`). A worker evaluates requests one at a time, in a sandbox with
no network and bounded memory, time and processes: it runs the validation checklist, then the
challenge's protocol on this Space's test set, whose ground truth your code never sees.
Failed requests say why; you may submit a fixed commit again.
"""
