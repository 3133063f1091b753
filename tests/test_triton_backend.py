"""The `triton` backend (the whole network in the fused kernels) against the torch backend,
on a real image: under TRITON_INTERPRET=1 on the CPU, or on a CUDA GPU where there is one.
Tolerances: fp32 throughout, outputs agree to one uint8 level (rounding of values that fall
within float error of a .5 boundary) on under 1 % of the pixels. fp16 (features and weights in
fp16, fp32 accumulation): measured under the interpreter at most one level on 4-5 % of the pixels
and the same PSNR to 0.002 dB; allowed: two levels, 10 % of the pixels, 0.05 dB."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("triton", reason="triton is not installed (pip install -e .[kernels])")

from edgedenoise import Denoiser  # noqa: E402
from edgedenoise.evaluate import psnr_u8  # noqa: E402
from edgedenoise.noise import protocol_noisy  # noqa: E402


@pytest.mark.slow
@pytest.mark.parametrize("h,w", [(48, 64), (37, 53)], ids=["multiple of 16", "odd size, padded"])
def test_triton_backend_matches_torch_backend(kodak_rgb, h, w):
    frame = protocol_noisy(np.ascontiguousarray(kodak_rgb[100:100 + h, 200:200 + w, ::-1]), 25, 0, "camera")
    ref = Denoiser.load("default", backend="torch", device="cpu").denoise(frame, 25)
    tri = Denoiser.load("default", backend="triton").denoise(frame, 25)
    assert tri.shape == frame.shape and tri.dtype == np.uint8
    diff = np.abs(tri.astype(int) - ref.astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 0.01, f"max {diff.max()}, {(diff > 0).sum()} pixels differ"


@pytest.mark.slow
@pytest.mark.parametrize("h,w", [(48, 64), (37, 53)], ids=["multiple of 16", "odd size, padded"])
def test_triton_backend_fp16_keeps_the_quality(kodak_rgb, h, w):
    from edgedenoise.backends.triton import TritonBackend
    from edgedenoise.modelfile import resolve

    clean = np.ascontiguousarray(kodak_rgb[100:100 + h, 200:200 + w, ::-1])
    frame = protocol_noisy(clean, 25, 0, "camera")
    ref = Denoiser.load("default", backend="torch", device="cpu").denoise(frame, 25)
    half = TritonBackend(resolve("default"), dtype="fp16").infer_frames(frame, 25)
    assert half.shape == frame.shape and half.dtype == np.uint8
    diff = np.abs(half.astype(int) - ref.astype(int))
    assert diff.max() <= 2 and (diff > 0).mean() < 0.10, f"max {diff.max()}, {(diff > 0).sum()} pixels differ"
    assert abs(psnr_u8(half, clean) - psnr_u8(ref, clean)) < 0.05


def test_triton_backend_handles_gray_and_bgra(kodak_rgb):
    den = Denoiser.load("default", backend="triton")
    gray = np.ascontiguousarray(kodak_rgb[:21, :19, 1])
    assert den.denoise(gray, 25).shape == gray.shape
    bgra = np.dstack([kodak_rgb[:21, :19], np.full((21, 19), 7, np.uint8)])
    out = den.denoise(bgra, 25)
    assert out.shape == bgra.shape and (out[:, :, 3] == 7).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA GPU")
@pytest.mark.parametrize("dtype", ["fp32", "fp16"])
def test_cuda_graph_replays_equal_eager_runs(kodak_rgb, dtype):
    """Each frame shape is captured once; later frames (new content, new sigma) replay it and
    must equal the eager backend exactly, since both run the same kernels on the same data."""
    from edgedenoise.backends.triton import TritonBackend
    from edgedenoise.modelfile import resolve

    graphed = TritonBackend(resolve("default"), dtype=dtype)
    eager = TritonBackend(resolve("default"), dtype=dtype, graphs=False)
    for i, (h, w, sigma) in enumerate([(64, 96, 25), (64, 96, 15), (37, 53, 50), (64, 96, 25)]):
        frame = protocol_noisy(np.ascontiguousarray(kodak_rgb[i * 40:i * 40 + h, :w, ::-1]), sigma, i, "camera")
        np.testing.assert_array_equal(graphed.infer_frames(frame, sigma), eager.infer_frames(frame, sigma))
    assert graphed.graphs, "capture failed: the backend fell back to eager"
    assert set(graphed._graphs) == {(1, 64, 96, 3), (1, 37, 53, 3)}


def clip_frames(kodak_rgb, h, w, n=4, seed=0):
    """n noisy frames of a small scene whose left half holds still and right half slides by 3 px a frame."""
    frames = []
    for i in range(n):
        clean = np.ascontiguousarray(kodak_rgb[100:100 + h, 200:200 + w, ::-1]).copy()
        clean[:, w // 2:] = kodak_rgb[100:100 + h, 200 + w // 2 + 3 * i:200 + w + 3 * i, ::-1]
        frames.append(protocol_noisy(clean, 25, seed + i, "camera"))
    return frames


@pytest.mark.slow
@pytest.mark.parametrize("h,w", [(48, 64), (37, 53)], ids=["multiple of 8", "odd size, padded"])
def test_triton_runs_a_recurrent_model_as_torch_does(kodak_rgb, h, w):
    """tiny-video (a gate branch fed colour sums): given the same previous output, the fused kernels
    give torch's frame to one level on under 1 % of the values; a scene's first frame is tiny's own
    output, to the bit; and a stream through VideoDenoiser keeps the two within that bound (measured
    under the interpreter: one level on 0.01-0.03 % of the values)."""
    from edgedenoise.temporal import VideoDenoiser

    frames = clip_frames(kodak_rgb, h, w, n=3)
    ref = Denoiser.load("tiny-video", backend="torch", device="cpu")
    tri = Denoiser.load("tiny-video", backend="triton")
    np.testing.assert_array_equal(tri.denoise(frames[0], 25), Denoiser.load("tiny", backend="triton").denoise(
        frames[0], 25))
    prev = ref.denoise(frames[0], 25)
    fused = 0
    for f in frames[1:]:
        want = ref.denoise(f, 25, prev)
        got = tri.denoise(f, 25, prev)
        diff = np.abs(got.astype(int) - want.astype(int))
        assert diff.max() <= 1 and (diff > 0).mean() < 0.01, f"max {diff.max()}, {(diff > 0).sum()} values differ"
        fused += np.abs(want.astype(int) - ref.denoise(f, 25).astype(int)).mean()  # what the previous output changed
        prev = want
    assert fused > 0.1, "the previous output changed nothing: the test checks no fusion"
    a = VideoDenoiser.load("tiny-video", backend="torch", device="cpu", temporal="model")
    b = VideoDenoiser.load("tiny-video", backend="triton", temporal="model")
    for f in frames:
        diff = np.abs(a.denoise(f, 25).astype(int) - b.denoise(f, 25).astype(int))
        assert diff.max() <= 1 and (diff > 0).mean() < 0.01, f"max {diff.max()}, {(diff > 0).sum()} values differ"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA GPU")
def test_cuda_graph_replays_a_recurrent_model_as_eager_runs_do(kodak_rgb):
    """The previous output is a static input of the graph like the frame: replays equal eager runs."""
    from edgedenoise.backends.triton import TritonBackend
    from edgedenoise.modelfile import resolve

    graphed = TritonBackend(resolve("tiny-video"), dtype="fp16")
    eager = TritonBackend(resolve("tiny-video"), dtype="fp16", graphs=False)
    prev = None
    for f in clip_frames(kodak_rgb, 64, 96, n=4):
        out = graphed.infer_frames(f, 25, prev)
        np.testing.assert_array_equal(out, eager.infer_frames(f, 25, prev))
        prev = out
    assert graphed.graphs and set(graphed._graphs) == {(1, 64, 96, 3)}
