"""Shared fixtures. Data comes from $EDGEDENOISE_DATA (default ../shared/data)."""
from __future__ import annotations

import os
from pathlib import Path

# Without a CUDA GPU the Triton kernels run in Triton's interpreter. The variable must be set
# before triton is first imported in this process, so it is set here, for the whole session.
if not os.path.exists("/dev/nvidia0"):
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402

from edgedenoise.data import default_data_root, list_images, read_image  # noqa: E402

DATA = default_data_root()


def pytest_report_header(config):
    return f"edgedenoise data: {DATA} ({'found' if DATA.exists() else 'MISSING'})"


@pytest.fixture(scope="session")
def data_root() -> Path:
    if not (DATA / "train" / "CBSD432").exists():
        pytest.fail(f"shared data not found at {DATA}: set EDGEDENOISE_DATA")
    return DATA


@pytest.fixture(scope="session")
def train_subset(data_root, tmp_path_factory) -> Path:
    """A folder of 20 CBSD432 images (symlinks: the data is never copied)."""
    d = tmp_path_factory.mktemp("train20")
    for p in list_images(data_root / "train" / "CBSD432")[:20]:
        os.symlink(p, d / p.name)
    return d


@pytest.fixture(scope="session")
def kodak_rgb():
    """The first Kodak24 image, RGB. Needs only that folder (the GPU check carries just this image)."""
    d = DATA / "test" / "Kodak24"
    if not d.exists():
        pytest.fail(f"shared data not found at {DATA} (no test/Kodak24): set EDGEDENOISE_DATA")
    return read_image(list_images(d)[0], 3)
