"""`edgedenoise kernels build`: the conv-kernel variants the model family needs, compiled
ahead of time (kernels/aot.py) for the chosen NVIDIA targets. No GPU needed."""
from __future__ import annotations

from pathlib import Path


def family_variants(sizes: list[str] | None = None, dtypes=("fp16", "fp32"), gates: list[int] | None = None) -> list:
    """One ConvVariant per distinct convolution (window, stride, padding, activation, channels)
    of the given model sizes (default: all), and their boundary kernels: ingest and egest, and
    for a size whose shipped recurrent model the kernels fuse (tiny -> tiny-video, small ->
    default-video) egest_gate and fuse_egest (fp32 only: the plugins feed it fp32); `gates`: the
    gate branch widths of other recurrent models to build them for (tools/jetson_deploy.py passes
    its model's)."""
    import torch.nn as nn
    from edgedenoise_kernels.aot import BoundaryVariant, ConvVariant
    from edgedenoise_kernels.blocks import conv_blocks

    from .backends.base import fused_gate
    from .model import SIZES, build_model
    from .modelfile import recurrent_variant, resolve

    seen = []
    for size in sizes or list(SIZES):
        net = build_model(size)
        video = recurrent_variant(size)
        shipped = resolve(video).config if video else {}
        widths = sorted({*([int(shipped["gate"])] if fused_gate(shipped) else []), *(gates or [])})
        kinds = [("ingest", net.config.widths[0], dtypes), ("egest", net.config.widths[0], dtypes)]
        if widths:
            kinds += [("egest_gate", net.config.widths[0], dtypes)] + [("fuse_egest", g, ("fp32",)) for g in widths]
        for kind, width, dts in kinds:
            for dt in dts:
                v = BoundaryVariant(kind, width, dt)
                if v not in seen:
                    seen.append(v)
        for name, m in net.named_modules():
            if not isinstance(m, nn.Conv2d):
                continue
            if name in ("head.0", "tail"):
                continue  # fused into the ingest / egest kernels
            # ReLU follows every conv but the upsampling 1x1 (pixel-shuffle follows).
            act = "none" if name.startswith("up.") else "relu"
            bn, bk = conv_blocks(m.in_channels, m.out_channels)
            for dt in dtypes:
                v = ConvVariant(m.kernel_size[0], m.kernel_size[1], m.stride[0], m.padding[0], act, False, bn, bk, dt,
                                m.in_channels, m.out_channels)
                if v not in seen:
                    seen.append(v)
    return seen


def build_kernels(targets: str, out: str | Path, sizes: list[str] | None = None,
                  gates: list[int] | None = None) -> dict:
    import os

    from tqdm import tqdm

    from .errors import EdgeDenoiseError

    if os.environ.get("TRITON_INTERPRET") == "1":
        raise EdgeDenoiseError("kernels build compiles for real GPUs: unset TRITON_INTERPRET first")
    dest = Path(out)
    if dest.exists() and not dest.is_dir():
        raise EdgeDenoiseError(f"kernels build --out {dest} is a file: give a folder (nothing was written)")
    if dest.is_dir() and any(dest.iterdir()) and not (dest / "manifest.json").exists():
        # its manifest and sm_XY folders would land among files of something else (a package, a bundle)
        raise EdgeDenoiseError(f"kernels build --out {dest} holds other files and no manifest.json (not a kernels "
                               f"build folder): give a new or empty folder (nothing was written)")

    from edgedenoise_kernels.aot import build, parse_targets

    ccs = parse_targets(targets)
    variants = family_variants(sizes, gates=gates)
    bar = tqdm(total=len(ccs) * len(variants), unit="kernel", desc="kernels build")

    def step(entry):
        bar.set_postfix_str(f"{entry['target']} {entry['name']}")
        bar.update(1)

    try:
        return build(variants, ccs, out, progress=step)
    finally:
        bar.close()
