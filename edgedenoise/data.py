"""Image folders: reading with clear errors, validation split, and seeded random patches.

NumPy + OpenCV only. Images are streamed from disk: a batch decodes the few files it
samples from and nothing is held in memory between batches.

Every batch is a pure function of (seed, step): patch i of step s comes from
`numpy.random.default_rng([seed, s, i // PATCHES_PER_IMAGE])` for the image and
`default_rng([seed, s, i])` for the crop, augmentation and noise. So resuming at step s
replays exactly the batches an uninterrupted run would have seen, and the ranks of a
distributed run each take their own slice of the same global batch.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import DataError
from .frames import IMAGE_EXTS, read_frame, to_channels, to_uint8

log = logging.getLogger("edgedenoise")

SAMPLE_IMAGE = Path(__file__).resolve().parent / "samples" / "astronaut.jpg"  # the bundled demo picture
PATCHES_PER_IMAGE = 4  # patches cut from one decoded image in a batch (decoding is the costly part)


def default_data_root() -> Path:
    """Where the shared data lives: $EDGEDENOISE_DATA, else ../shared/data beside the checkout."""
    env = os.environ.get("EDGEDENOISE_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent.parent / "shared" / "data"


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files of a folder (not recursive), sorted by name. Errors if there are none."""
    folder = Path(folder)
    if not folder.exists():
        raise DataError(f"image folder not found: {folder}")
    if not folder.is_dir():
        raise DataError(f"not a folder: {folder}")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS)
    if not files:
        raise DataError(f"no images ({', '.join(IMAGE_EXTS)}) in {folder}")
    return files


def read_image(path: str | os.PathLike, channels: int = 3) -> np.ndarray:
    """Read an image file as uint8 HxWxC, RGB order for colour (C=3) or one channel (C=1).
    Raises DataError with a one-line reason for missing, corrupt or unsupported files."""
    img = read_frame(path)
    img = to_uint8(img, str(path))
    img = to_channels(img, channels, str(path), bgr=True)
    if channels == 3:
        img = np.ascontiguousarray(img[:, :, ::-1])  # BGR -> RGB
    return img


@dataclass
class ImageInfo:
    path: Path
    height: int
    width: int


def scan_images(folder: str | os.PathLike, min_size: int = 0, channels: int = 3) -> list[ImageInfo]:
    """Decode every image once to check it; unreadable ones and ones smaller than
    `min_size` are skipped with one warning line each. Errors if none is usable."""
    usable, skipped = [], []
    for p in list_images(folder):
        try:
            img = read_image(p, channels)
        except DataError as e:
            skipped.append(str(e))
            continue
        h, w = img.shape[:2]
        if min(h, w) < min_size:
            skipped.append(f"{p}: {w}x{h} is smaller than the {min_size}x{min_size} patch, skipped")
            continue
        usable.append(ImageInfo(p, h, w))
    for msg in skipped:
        log.warning("skipping %s", msg)
    if not usable:
        raise DataError(f"no usable training images in {folder} ({len(skipped)} skipped; patch size {min_size})")
    return usable


def split(items: list, val_count: int) -> tuple[list, list]:
    """Deterministic train/validation split: `val_count` items evenly spaced through the
    sorted list go to validation, the rest to training."""
    if val_count <= 0:
        return list(items), []
    if val_count >= len(items):
        raise DataError(f"validation split of {val_count} leaves no training images (only {len(items)})")
    idx = set(np.linspace(0, len(items) - 1, val_count).round().astype(int).tolist())
    train = [x for i, x in enumerate(items) if i not in idx]
    val = [x for i, x in enumerate(items) if i in idx]
    return train, val


VAL_COUNT = 8  # the images `edgedenoise train` holds out for validation by default (--val-count)


def validation_images(folder: str | os.PathLike, count: int = VAL_COUNT, min_size: int = 0,
                      channels: int = 3) -> list[ImageInfo]:
    """The images of `folder` that `edgedenoise train --data folder --val-count count` holds out for
    validation (`split` of `scan_images`): where tools and benchmarks tune and decide, never on a
    test set. `min_size`: as train's --patch; the same images whenever every image is that large."""
    return split(scan_images(folder, min_size=min_size, channels=channels), count)[1]


def augment(patch: np.ndarray, k: int) -> np.ndarray:
    """One of the 8 dihedral transforms (flips and 90-degree rotations), k in 0..7."""
    if k & 4:
        patch = patch[:, ::-1]
    return np.rot90(patch, k & 3)


def batch_images(images: list[ImageInfo], channels: int, seed: int, step: int, start: int, stop: int):
    """For items start..stop-1 of step's global batch: (j, image, rng), j counting from 0, the image
    picked by default_rng([seed, step, i // PATCHES_PER_IMAGE, 0]) (decoded once per group) and the
    item's own generator default_rng([seed, step, i, 1]) for its crop (or clip) and augmentation."""
    cache: dict[int, np.ndarray] = {}
    for j, i in enumerate(range(start, stop)):
        group = i // PATCHES_PER_IMAGE
        if group not in cache:
            pick = int(np.random.default_rng([seed, step, group, 0]).integers(len(images)))
            cache = {group: read_image(images[pick].path, channels)}
        yield j, cache[group], np.random.default_rng([seed, step, i, 1])


class PatchSampler:
    """Random clean patches (HxWxC uint8 -> float32 CHW in [0,1]), seeded by (seed, step, index)."""

    def __init__(self, images: list[ImageInfo], patch: int, channels: int, seed: int):
        self.images, self.patch, self.channels, self.seed = images, patch, channels, seed

    def patches(self, step: int, start: int, stop: int) -> np.ndarray:
        """Patches start..stop-1 of the global batch of `step`, shape (stop-start, C, P, P)."""
        out = np.empty((stop - start, self.channels, self.patch, self.patch), np.float32)
        for j, img, rng in batch_images(self.images, self.channels, self.seed, step, start, stop):
            h, w = img.shape[:2]
            y = int(rng.integers(h - self.patch + 1))
            x = int(rng.integers(w - self.patch + 1))
            p = augment(img[y : y + self.patch, x : x + self.patch], int(rng.integers(8)))
            out[j] = np.moveaxis(p, -1, 0).astype(np.float32) / 255.0
        return out
