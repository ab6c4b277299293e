"""The app's prose: the challenge, its tracks and score, and the participant's path.

Numbers come from :mod:`rtsr.constants`, so the page cannot drift from the code that scores.
"""

from __future__ import annotations

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
Try the models of the **NTIRE 2023 Real-Time Super-Resolution** challenge: upscale an image,
simulate the challenge's degradation (bicubic ↓ + JPEG q={JPEG_QUALITY}) and measure the result,
or compare every entry's quality against its runtime on the leaderboard.
"""

LEADERBOARD_NOTE = """\
Every row names the device and precision that measured it: milliseconds from different devices
do not compare, **× bicubic** (the runtime over bicubic's on the same device) does. Stars mark the
Pareto front: no other entry is both at least as fast and at least as good. Scores of runs
timed on a CPU are far below the official ones and say nothing about a GPU.
"""

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
score = {SCORE_NUMERATOR:g} · 2^(PSNR − PSNR_bicubic) / ({SCORE_RUNTIME_FACTOR:g} · √runtime_ms)
```
Each dB gained over bicubic doubles the score; halving the runtime multiplies it by √2.
A method no better than bicubic scores 0. The leaderboard's frame-rate bands: {_BANDS}.

## Submit a model
Everything below runs with the `rtsr` command-line tool of this Space's repository
(`pip install -r requirements.txt`, then `python -m rtsr --help`).

1. **Pack** your model in the challenge's layout: a folder with `arch.py` defining
   `srmodel()`, the weights (`.safetensors`, or a `.pth` loadable with `weights_only=True`)
   and `submission.json` (team, method, scale):
   ```
   python -m rtsr pack my_team
   ```
2. **Validate** it: the checks run in a sandbox, without network and with limits on time,
   memory and processes (imports, output size and range, FP16 fidelity on a GPU,
   reproduction of your `results/`):
   ```
   python -m rtsr validate my_team --lr-dir set5/lr_x2
   ```
3. **Evaluate** it on a set made with the challenge's degradation:
   ```
   python -m rtsr prepare-data --image-dir Set5 --lr-out-dir set5/lr_x2 --gt-out-dir set5/gt_x2 --downsample-factor 2
   python -m rtsr evaluate --model my_team --lr-dir set5/lr_x2 --gt-dir set5/gt_x2 \\
       --dataset Set5 --out my_team_set5.json
   ```
4. **Publish** it to the Hugging Face Hub with its model card and results (add `--dry-run`
   to see what would be uploaded):
   ```
   python -m rtsr publish my_team --repo-id my-team/espcn-x2 --eval my_team_set5.json
   ```
5. **Submit** the repo in the **Submit** tab (sign in with Hugging Face, enter `org/name`,
   pick the track), or from the command line:
   ```
   python -m rtsr submit my-team/espcn-x2 --track 1
   ```
   The request is pinned to the repo's commit at that moment. A worker downloads that
   commit, runs the checklist in the sandbox and evaluates it on the Space's test set; your
   code sees the degraded inputs only, never the ground truth. A passing submission appears
   on the leaderboard, linked to the commit measured, and in the Upscale tab, where it runs in
   a sandboxed process of its own.
"""

SUBMIT_INTRO = """\
## Submit a model for evaluation
Publish your submission to the Hugging Face Hub first (`python -m rtsr publish`, see About),
then sign in and enter its repo. The request is pinned to the repo's current commit (or the
one you name with `@<commit>`). A worker evaluates requests one at a time, in a sandbox with
no network and bounded memory, time and processes: it runs the validation checklist, then the
challenge's protocol on this Space's test set, whose ground truth your code never sees.
Failed requests say why; you may submit a fixed commit again.
"""
