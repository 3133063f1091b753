"""edgedenoise: real-time neural video denoising for edge devices.

    from edgedenoise import Denoiser
    out = Denoiser.load("default").denoise(frame, sigma=None)

    from edgedenoise import VideoDenoiser       # frames of one video, in order: a state between calls
    vd = VideoDenoiser.load("default")
    out = vd.denoise(frame, sigma=None)

Importing the package imports neither torch nor triton.
"""
__version__ = "0.1.0"

from .denoiser import Denoiser  # noqa: E402
from .errors import DataError, EdgeDenoiseError, ModelError  # noqa: E402
from .temporal import VideoDenoiser  # noqa: E402

__all__ = ["Denoiser", "VideoDenoiser", "DataError", "EdgeDenoiseError", "ModelError", "__version__"]
