"""Bicubic upscaling x2, the challenge's reference, as a submission.

It needs no weights; it imports rtsr, which the app and the CLI always have.
"""

from rtsr.models import Bicubic


def srmodel():
    return Bicubic(upscale=2)
