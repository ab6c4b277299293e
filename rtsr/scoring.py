"""The challenge's score: PSNR gain over bicubic traded against FP16 runtime.

``calc_scoring.ipynb`` of NTIRE 2023 RTSR::

    score = 2 ** (PSNR - PSNR_bicubic) * 2 / (0.1 * sqrt(runtime_ms))

with PSNR on RGB in dB over the test set and runtime the mean FP16 milliseconds for one
4K output. Each 1 dB gained doubles the score; halving the runtime multiplies it by sqrt(2).
"""

from __future__ import annotations

import math

from rtsr.constants import SCORE_NUMERATOR, SCORE_RUNTIME_FACTOR


def score(psnr: float, runtime_ms: float, bicubic_psnr: float) -> float:
    """The challenge score of a method; 0 where its PSNR is not above bicubic's.

    Args:
        psnr: the method's mean PSNR on RGB, dB.
        runtime_ms: its mean runtime per image, milliseconds (> 0).
        bicubic_psnr: bicubic's mean PSNR on RGB on the same set, dB.

    Raises:
        ValueError: ``runtime_ms`` is not positive, or a PSNR is NaN.
    """
    if not runtime_ms > 0 or not math.isfinite(runtime_ms):
        raise ValueError(f"runtime must be a positive number of ms, got {runtime_ms}")
    if math.isnan(psnr) or math.isnan(bicubic_psnr):
        raise ValueError("PSNR must be a number, got NaN")
    gain = psnr - bicubic_psnr
    if gain <= 0:
        return 0.0
    return SCORE_NUMERATOR * 2.0**gain / (SCORE_RUNTIME_FACTOR * math.sqrt(runtime_ms))


def psnr_for_score(target_score: float, runtime_ms: float, bicubic_psnr: float) -> float:
    """The PSNR at which a method of this runtime reaches ``target_score``: the inverse of
    :func:`score` in the PSNR, for drawing iso-score curves.

    ``bicubic_psnr + log2(target_score * 0.1 * sqrt(runtime_ms) / 2)``, in dB on RGB. The
    result can be at or below ``bicubic_psnr`` (slow methods with a low target): the formula
    reaches the target there, but :func:`score` gives 0 for no gain, so no method of this
    runtime scores exactly ``target_score``; any gain at all scores more.

    Args:
        target_score: the score, > 0.
        runtime_ms: the runtime per image, milliseconds (> 0).
        bicubic_psnr: bicubic's mean PSNR on RGB on the same set, dB.

    Raises:
        ValueError: ``target_score`` or ``runtime_ms`` is not a positive finite number, or
            ``bicubic_psnr`` is NaN.
    """
    if not target_score > 0 or not math.isfinite(target_score):
        raise ValueError(f"score must be a positive number, got {target_score}")
    if not runtime_ms > 0 or not math.isfinite(runtime_ms):
        raise ValueError(f"runtime must be a positive number of ms, got {runtime_ms}")
    if math.isnan(bicubic_psnr):
        raise ValueError("PSNR must be a number, got NaN")
    gain = math.log2(target_score * SCORE_RUNTIME_FACTOR * math.sqrt(runtime_ms) / SCORE_NUMERATOR)
    return bicubic_psnr + gain
