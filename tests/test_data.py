import os

import cv2
import numpy as np
import pytest

from edgedenoise.data import PatchSampler, list_images, read_image, scan_images, split
from edgedenoise.errors import DataError


def test_reads_colour_as_rgb(data_root):
    p = list_images(data_root / "test" / "Kodak24")[0]
    rgb = read_image(p, 3)
    bgr = cv2.imread(str(p))
    assert rgb.dtype == np.uint8 and np.array_equal(rgb[:, :, ::-1], bgr)


def test_16bit_4channel_and_gray_are_handled(tmp_path):
    rng = np.random.default_rng(0)
    img16 = rng.integers(0, 65536, (20, 30, 4)).astype(np.uint16)  # 16-bit BGRA
    cv2.imwrite(str(tmp_path / "a.png"), img16)
    rgb = read_image(tmp_path / "a.png", 3)
    assert rgb.shape == (20, 30, 3) and rgb.dtype == np.uint8
    assert np.abs(rgb[:, :, ::-1].astype(int) - img16[:, :, :3] / 257).max() <= 0.5 + 1e-9
    gray = rng.integers(0, 256, (20, 30)).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "g.png"), gray)
    assert np.array_equal(read_image(tmp_path / "g.png", 3), np.repeat(gray[:, :, None], 3, 2))
    assert read_image(tmp_path / "a.png", 1).shape == (20, 30, 1)


def test_bad_files_give_one_line_errors(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(DataError, match="corrupt"):
        read_image(tmp_path / "bad.png")
    with pytest.raises(DataError, match="not found"):
        read_image(tmp_path / "nope.png")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no images"):
        list_images(empty)
    with pytest.raises(DataError, match="not found"):
        list_images(tmp_path / "missing")


def test_scan_skips_corrupt_and_small_images(tmp_path, data_root, caplog):
    src = list_images(data_root / "train" / "CBSD432")[:3]
    for p in src:
        os.symlink(p, tmp_path / p.name)
    (tmp_path / "zz_corrupt.jpg").write_bytes(b"garbage")
    cv2.imwrite(str(tmp_path / "zz_small.png"), np.zeros((20, 20, 3), np.uint8))
    usable = scan_images(tmp_path, min_size=64)
    assert [u.path.name for u in usable] == [p.name for p in src]
    assert "zz_corrupt.jpg" in caplog.text and "smaller than" in caplog.text
    with pytest.raises(DataError, match="no usable training images"):
        scan_images(tmp_path, min_size=10_000)


def test_split_is_deterministic_and_disjoint():
    items = list(range(100))
    tr, va = split(items, 8)
    assert len(va) == 8 and len(tr) == 92 and not set(tr) & set(va)
    assert split(items, 8) == (tr, va)
    with pytest.raises(DataError):
        split(items[:3], 3)


def test_validation_images_are_the_ones_train_holds_out(train_subset):
    """What tools and benchmarks tune on (data.validation_images) is train's validation split."""
    from edgedenoise.data import validation_images
    from edgedenoise.train import load_images
    from edgedenoise.trainconfig import TrainConfig

    held = load_images(TrainConfig(data=str(train_subset), val_count=3, patch=64))[1]
    assert [i.path for i in validation_images(train_subset, 3, min_size=64)] == [i.path for i in held]
    assert len(held) == 3


def test_patches_depend_only_on_seed_and_step(train_subset):
    imgs = scan_images(train_subset, min_size=32)
    s = PatchSampler(imgs, 32, 3, seed=5)
    full = s.patches(step=7, start=0, stop=8)
    assert full.shape == (8, 3, 32, 32) and full.dtype == np.float32 and 0 <= full.min() and full.max() <= 1
    assert np.array_equal(full[4:], s.patches(step=7, start=4, stop=8))  # a rank's slice of the same batch
    assert not np.array_equal(full, s.patches(step=8, start=0, stop=8))
