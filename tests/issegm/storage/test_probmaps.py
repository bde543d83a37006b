"""Low-resolution maps on disk (issegm/storage/probmaps.py)."""
import numpy as np

from issegm.storage.probmaps import LowRes
from issegm.storage.probmaps import load_lowres, save_lowres


def test_stored_map_carries_its_stride(tmp_path):
    low = LowRes(np.random.RandomState(0).rand(3, 10, 18).astype(np.float32), (36, 72), 4)
    save_lowres(str(tmp_path / 'a.npz'), low, (40, 80))
    back, orig_hw = load_lowres(str(tmp_path / 'a.npz'), 8)
    assert back.stride == 4 and back.im_hw == (36, 72) and orig_hw == (40, 80)
    np.testing.assert_array_equal(back.probs, low.probs)
    # A map stored before strides were (network stride, one step) reads at the network stride.
    np.savez(str(tmp_path / 'old.npz'), probs=low.probs, im_hw=np.array([36, 72]), orig_hw=np.array([40, 80]))
    assert load_lowres(str(tmp_path / 'old.npz'), 8)[0].stride == 8
