import numpy as np
import pytest
import torch
from resize_right import interp_methods, resize

from rtsr.imresize import imresize
from tests.support.data import photo


@pytest.mark.parametrize("scale", [1 / 2, 1 / 3, 2.0, 3.0])
def test_matches_resize_right_with_symmetric_padding(scale):
    rng = np.random.default_rng(0)
    image = rng.random((60, 42)) * 255
    ref = resize(
        image, scale_factors=scale, interp_method=interp_methods.cubic, antialiasing=True, pad_mode="symmetric"
    )
    ours = imresize(torch.from_numpy(image), scale).numpy()
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, atol=1e-9)


def test_matches_resize_right_on_a_photo_per_channel():
    image = photo("astronaut")[:510, :510].astype(np.float64)  # sides divisible by 3
    ref = resize(image, scale_factors=(1 / 3, 1 / 3, 1), pad_mode="symmetric")
    ours = imresize(torch.from_numpy(image.transpose(2, 0, 1).copy()), 1 / 3).numpy().transpose(1, 2, 0)
    np.testing.assert_allclose(ours, ref, atol=1e-9)


def test_keeps_constants_and_linear_ramps_in_the_interior():
    flat = torch.full((1, 24, 36), 100.0, dtype=torch.float64)
    assert torch.allclose(imresize(flat, 0.5), torch.full((1, 12, 18), 100.0, dtype=torch.float64))
    # MATLAB maps output pixel i (0-based) to input coordinate 2i + 0.5 when halving:
    # a cubic kernel reproduces a linear ramp exactly away from the borders.
    ramp = torch.arange(48, dtype=torch.float64).repeat(4, 1)[None]
    out = imresize(ramp, 0.5)[0, 0]
    expected = 2 * torch.arange(24, dtype=torch.float64) + 0.5
    assert torch.allclose(out[3:-3], expected[3:-3])


def test_refuses_integer_tensors():
    with pytest.raises(ValueError, match="floating-point"):
        imresize(torch.zeros(1, 4, 4, dtype=torch.uint8), 0.5)
