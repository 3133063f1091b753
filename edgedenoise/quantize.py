"""INT8 for CPUs: ONNX Runtime static quantization (QDQ) of an exported model.

    edgedenoise quantize --model default --calib ../shared/data/train/CBSD432

writes `<model>.int8.onnx` beside the model's `.onnx` (or `--out`). Weights are quantized
per output channel (int8, symmetric), activations per tensor (uint8), with ranges calibrated
on noisy crops of clean training images: camera-protocol noise at sigmas spread over 0-60, so
the ranges cover what a camera stream delivers. The Denoiser loads the result with
`precision="int8"` (`--precision int8` on the command line); the graph keeps the float model's
inputs, outputs and metadata, so everything else stays the same.

Needs only onnxruntime and onnx (no torch). What INT8 costs in PSNR and gains in speed is
measured in benchmarks/ (quality.py and latency.py), not assumed.
"""
from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np

from .errors import DataError, ModelError
from .modelfile import MODELS_DIR, resolve
from .outputs import guard
from .onnxweights import fold_weight_casts

CALIB_CROP = 128  # calibration crops are CALIB_CROP x CALIB_CROP (a multiple of every size_multiple)
CALIB_SIGMA = (0.0, 60.0)
# Activation ranges clip the top and bottom 0.01 % of calibrated values. Chosen on the 8 held-out
# training images (default, camera protocol, calibrated on the other 424): 99.99 gained 0.09 dB at
# sigma 25 (and 0.14 at 15, -0.01 at 50) over 99.999; 99.95 and 99.9 lost at sigma 50.
CALIB_PERCENTILE = 99.99


def int8_path(onnx_path: Path) -> Path:
    """model.onnx -> model.int8.onnx"""
    return onnx_path.with_name(onnx_path.stem + ".int8.onnx")


def calibration_batches(folder: str | Path, count: int = 32, seed: int = 0) -> list[dict]:
    """`count` noisy crops (camera protocol) of the images in `folder`, as ONNX feeds."""
    from .data import scan_images, read_image
    from .noise import protocol_noisy

    images = scan_images(folder, min_size=CALIB_CROP, channels=3)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(images))
    feeds = []
    for k in range(count):
        info = images[int(order[k % len(images)])]
        clean = read_image(info.path, 3)
        y = int(rng.integers(0, clean.shape[0] - CALIB_CROP + 1))
        x = int(rng.integers(0, clean.shape[1] - CALIB_CROP + 1))
        crop = clean[y:y + CALIB_CROP, x:x + CALIB_CROP]
        sigma = float(rng.uniform(*CALIB_SIGMA))
        noisy = protocol_noisy(crop, sigma, 10_000 + k, "camera")
        feeds.append({"noisy": noisy.transpose(2, 0, 1)[None].astype(np.float32) / 255.0,
                      "sigma": np.array([sigma / 255.0], np.float32)})
    return feeds


def quantize_model(model: str | Path, calib: str | Path, out: str | Path | None = None, count: int = 32,
                   progress: bool = True) -> dict:
    """Write the INT8 (QDQ) variant of a model's ONNX export. Returns a summary dict."""
    try:
        import onnx
        from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                              quantize_static)
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError as e:
        raise ModelError(f"quantize needs onnxruntime and onnx ({e}): pip install -e .[runtime] onnx") from None

    files = resolve(model)
    if files.onnx is None:
        raise ModelError(f"model {model} has no .onnx export: run `edgedenoise export --model {model} --out X.onnx`")
    if files.channels != 3:
        raise ModelError("quantize calibrates colour models only (this model has 1 channel)")
    if out:
        out = Path(out)
    elif files.onnx.resolve().parent == MODELS_DIR.resolve():
        out = Path(int8_path(files.onnx).name)  # never into the installed package: the working folder
    else:
        out = int8_path(files.onnx)  # beside the user's own model, where --precision int8 finds it
    guard(out, [files.onnx, files.weights], what="quantize output")
    t0 = time.time()
    feeds = calibration_batches(calib, count)
    if not feeds:
        raise DataError(f"no calibration images in {calib}")

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(feeds)
            self.bar = None
            if progress:
                from tqdm import tqdm

                self.bar = tqdm(total=len(feeds), unit="crop", desc="calibrate")

        def get_next(self):
            item = next(self.it, None)
            if self.bar is not None:
                self.bar.update(item is not None)
                if item is None:
                    self.bar.close()
            return item

    with tempfile.TemporaryDirectory() as tmp:
        pre, src = Path(tmp) / "pre.onnx", files.onnx
        proto = onnx.load(str(files.onnx))
        if fold_weight_casts(proto):  # float16-stored weights: the quantizer wants float32 initializers
            src = Path(tmp) / "float.onnx"
            onnx.save(proto, str(src))
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        quantize_static(
            str(pre), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            # percentile ranges: a few extreme activations do not stretch the 256 levels
            # (0.05 dB better than min/max ranges on a Kodak24 crop at sigma 25)
            calibrate_method=CalibrationMethod.Percentile,
            extra_options={"CalibPercentile": CALIB_PERCENTILE},
        )
    # keep the float model's metadata (name, config, size_multiple), marked as int8
    m = onnx.load(str(out))
    props = {p.key: p.value for p in proto.metadata_props}
    props.pop("weights_storage", None)  # int8 now
    props["precision"] = "int8"
    calibration = (f"{len(feeds)} crops {CALIB_CROP}x{CALIB_CROP} of {Path(calib).name}, "
                   f"camera noise sigma {CALIB_SIGMA[0]:g}-{CALIB_SIGMA[1]:g}")
    props["quantization"] = json.dumps({"format": "QDQ", "weights": "int8 per channel",
                                        "activations": "uint8 per tensor", "calibration": calibration,
                                        "method": f"percentile {CALIB_PERCENTILE:g}"})
    del m.metadata_props[:]
    for k, v in props.items():
        m.metadata_props.add(key=k, value=v)
    onnx.save(m, str(out))
    return {"path": str(out), "bytes": out.stat().st_size, "seconds": round(time.time() - t0, 1),
            "calibration_crops": len(feeds), "source": str(files.onnx)}
