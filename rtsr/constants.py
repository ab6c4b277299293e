"""The NTIRE 2023 Real-Time Super-Resolution challenge's constants, named once.

Sources: the challenge's repository (eduardzamfir/NTIRE23-RTSR: ``prepare_data.py``,
``runtime_demo.py``, ``calc_scoring.ipynb``) and its report (Conde et al., CVPRW 2023).
"""

from __future__ import annotations

from typing import Final

#: Upscaling factor of each track: Track 1 is 1080p -> 4K (x2), Track 2 is 720p -> 4K (x3).
TRACK_SCALES: Final[dict[int, int]] = {1: 2, 2: 3}
#: The scales the challenge accepts.
SCALES: Final[tuple[int, ...]] = tuple(TRACK_SCALES.values())

#: The 4K UHD target every track upscales to, as (height, width) in pixels.
TARGET_SIZE: Final[tuple[int, int]] = (2160, 3840)

#: JPEG quality of the challenge's LR inputs (Pillow's 1-95 scale).
JPEG_QUALITY: Final[int] = 90

#: Runtime protocol of ``runtime_demo.py``: untimed warm-up passes, then timed passes.
WARMUP_PASSES: Final[int] = 50
TIMED_PASSES: Final[int] = 244

#: Frame rates the challenge plots as bands, in frames per second.
FPS_BANDS: Final[tuple[int, ...]] = (60, 30, 24)

#: Peak value of 8-bit images, the ``MAX`` in PSNR.
PEAK: Final[float] = 255.0

#: SSIM of Wang et al. (2004): Gaussian window of ``SSIM_WINDOW`` taps, std ``SSIM_SIGMA``,
#: stabilising constants ``(K1 * L)^2`` and ``(K2 * L)^2``.
SSIM_WINDOW: Final[int] = 11
SSIM_SIGMA: Final[float] = 1.5
SSIM_K1: Final[float] = 0.01
SSIM_K2: Final[float] = 0.03

#: ITU-R BT.601 luma from RGB on [0, 1], giving Y on [16, 235], as MATLAB's ``rgb2ycbcr``.
BT601_Y_OFFSET: Final[float] = 16.0
BT601_Y_WEIGHTS: Final[tuple[float, float, float]] = (65.481, 128.553, 24.966)

#: The score of ``calc_scoring.ipynb``:
#: ``SCORE_NUMERATOR * 2 ** (PSNR - PSNR_bicubic) / (SCORE_RUNTIME_FACTOR * sqrt(runtime_ms))``.
SCORE_NUMERATOR: Final[float] = 2.0
SCORE_RUNTIME_FACTOR: Final[float] = 0.1
