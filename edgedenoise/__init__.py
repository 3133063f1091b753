"""edgedenoise: real-time neural video denoising for edge devices.

    from edgedenoise import Denoiser
    out = Denoiser.load("default").denoise(frame, sigma=None)

    from edgedenoise import VideoDenoiser       # frames of one video, in order: a state between calls
    vd = VideoDenoiser.load("default")
    out = vd.denoise(frame, sigma=None)

Importing the package imports neither torch nor triton.
"""
from .denoiser import Denoiser
from .errors import DataError, EdgeDenoiseError, ModelError
from .temporal import VideoDenoiser
from .version import __version__

__all__ = ["Denoiser", "VideoDenoiser", "DataError", "EdgeDenoiseError", "ModelError", "__version__"]
