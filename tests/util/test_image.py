"""Normalisation by lookup table gives the reference's bits."""
import numpy as np

from util.image import MEAN_RGB, STD_RGB, normalize


def test_normalize_equals_the_reference_arithmetic_bit_for_bit():
    rng = np.random.RandomState(0)
    img = rng.randint(0, 256, (37, 300, 3)).astype(np.uint8)
    img[0, :256] = np.arange(256)[:, None]   # every byte in every channel
    # the reference: float32 scaling, float64 mean and std, float32 result
    ref = ((img.astype(np.float32) * np.float32(1.0 / 255) - MEAN_RGB) / STD_RGB).transpose(2, 0, 1)
    got = normalize(img)
    assert got.dtype == np.float32 and got.shape == (3, 37, 300) and got.flags.c_contiguous
    np.testing.assert_array_equal(got.view(np.uint32), ref.astype(np.float32).view(np.uint32))
    padded = np.zeros((3, 40, 304), np.float32)
    normalize(img, out=padded[:, :37, :300])
    np.testing.assert_array_equal(padded[:, :37, :300], got)
    assert not padded[:, 37:].any() and not padded[:, :, 300:].any()
