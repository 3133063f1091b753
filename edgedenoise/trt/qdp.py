"""The ahead-of-time Quickly Deployable Plugins: how TensorRT >= 10.9 runs the boundary kernels.

`tensorrt.plugin` describes each plugin by decorated functions: its output shape and type
(`register`), the formats it takes (`autotune`: channel-last features, as plugins.py says) and
its ahead-of-time implementation (`aot_impl`): the kernel's name, its PTX with the parameters in
TensorRT's order (aot_kernels.BoundaryKernel.qdp_ptx), the launch parameters as symbolic
expressions of the tensor shapes, and the int32 scalar arguments. TensorRT embeds the PTX in the
engine and launches it itself. QDP nodes carry `aot=1` (graph.prepare_onnx), so that the parser
asks for the AOT implementation.

No `from __future__ import annotations` in this module: tensorrt.plugin reads the annotations of
the decorated functions as objects.
"""
from .aot_kernels import NAMESPACE, BoundaryKernel
from .launch import eval_grid


def qdp_kernel(trtp, kernel: BoundaryKernel, scalars: dict):
    """What @trtp.aot_impl returns: kernel name, PTX, launch parameters, int32 scalar arguments."""
    grid = eval_grid(kernel.grid, {**kernel.constants, **scalars}, div=trtp.cdiv)
    launch = trtp.KernelLaunchParams()
    launch.grid_x, launch.grid_y, launch.grid_z = grid
    launch.block_x = 32 * kernel.num_warps
    launch.shared_mem = kernel.shared
    extra = trtp.SymIntExprs.from_tuple([trtp.SymInt32(scalars[name]) for name in kernel.scalar_args])
    return kernel.function.encode(), kernel.qdp_ptx(), launch, extra


def register(trt, kernels) -> list:
    """Describe Ingest, Egest, EgestGate and FuseEgest to tensorrt.plugin (`kernels()`: the
    registered KernelSet, which aot_impl takes each kernel's PTX from; passed in by plugins.py, not
    imported from it); returns the decorated functions."""
    import tensorrt.plugin as trtp

    # what an aot_impl returns, as tensorrt.plugin checks it (it refuses an aot_impl without this annotation)
    AotKernel = tuple[str | bytes, str | bytes, trtp.KernelLaunchParams, trtp.SymExprs]  # noqa: N806

    def dtypes(half: int) -> tuple[str, str]:
        return ("FP16", "HWC8") if half else ("FP32", "HWC")

    @trtp.register(f"{NAMESPACE}::Ingest")
    def ingest_desc(frame: trtp.TensorDesc, wp: trtp.TensorDesc, bias: trtp.TensorDesc, sigma: trtp.TensorDesc,
                    multiple: int, width: int, half: int) -> trtp.TensorDesc:
        n, h, w = frame.shape_expr[0], frame.shape_expr[1], frame.shape_expr[2]
        hh, wh = trtp.cdiv(h, multiple) * (multiple // 2), trtp.cdiv(w, multiple) * (multiple // 2)
        return trtp.from_shape_expr((n, width, hh, wh), dtype=trt.float16 if half else trt.float32)

    @trtp.autotune(f"{NAMESPACE}::Ingest")
    def ingest_formats(frame, wp, bias, sigma, half, outputs):
        t, f = dtypes(half)
        return [trtp.AutoTuneCombination(f"UINT8, {t}, FP32, FP32, {t}", f"LINEAR, LINEAR, LINEAR, LINEAR, {f}")]

    @trtp.aot_impl(f"{NAMESPACE}::Ingest")
    def ingest_aot(frame, wp, bias, sigma, multiple, width, half, outputs, tactic) -> AotKernel:
        k = kernels().kernel("ingest", int(width), "fp16" if half else "fp32")
        out = outputs[0].shape_expr
        scalars = {"N": frame.shape_expr[0], "H": frame.shape_expr[1], "W": frame.shape_expr[2], "HH": out[2],
                   "WH": out[3], "CO": int(width)}
        return qdp_kernel(trtp, k, scalars)

    @trtp.register(f"{NAMESPACE}::Egest")
    def egest_desc(h: trtp.TensorDesc, wp: trtp.TensorDesc, bias: trtp.TensorDesc, frame: trtp.TensorDesc,
                   width: int, half: int) -> trtp.TensorDesc:
        return frame.like()

    @trtp.autotune(f"{NAMESPACE}::Egest")
    def egest_formats(h, wp, bias, frame, half, outputs):
        t, f = dtypes(half)
        return [trtp.AutoTuneCombination(f"{t}, {t}, FP32, UINT8, UINT8", f"{f}, LINEAR, LINEAR, LINEAR, LINEAR")]

    def tail_kernel(kind, feats, frame, width, half):
        """A kernel on the features' half-resolution grid that reads the frame (Egest, EgestGate, FuseEgest)."""
        k = kernels().kernel(kind, int(width), "fp16" if half else "fp32")
        f = frame.shape_expr
        scalars = {"N": f[0], "H": f[1], "W": f[2], "HH": feats.shape_expr[2], "WH": feats.shape_expr[3],
                   "CI": int(width)}
        return qdp_kernel(trtp, k, scalars)

    @trtp.aot_impl(f"{NAMESPACE}::Egest")
    def egest_aot(h, wp, bias, frame, width, half, outputs, tactic) -> AotKernel:
        return tail_kernel("egest", h, frame, width, half)

    # a recurrent graph's tail (graph.prepare_onnx): EgestGate, the gate convs (TensorRT's), FuseEgest
    @trtp.register(f"{NAMESPACE}::EgestGate")
    def egest_gate_desc(h: trtp.TensorDesc, wp: trtp.TensorDesc, bias: trtp.TensorDesc, frame: trtp.TensorDesc,
                        previous: trtp.TensorDesc, smap: trtp.TensorDesc, width: int,
                        half: int) -> tuple[trtp.TensorDesc, trtp.TensorDesc]:
        n, hh, wh = h.shape_expr[0], h.shape_expr[2], h.shape_expr[3]
        return (trtp.from_shape_expr((n, 12, hh, wh), dtype=trt.float32),
                trtp.from_shape_expr((n, 3, hh, wh), dtype=trt.float32))

    @trtp.autotune(f"{NAMESPACE}::EgestGate")
    def egest_gate_formats(h, wp, bias, frame, previous, smap, half, outputs):
        t, f = dtypes(half)
        return [trtp.AutoTuneCombination(f"{t}, {t}, FP32, UINT8, UINT8, FP32, FP32, FP32",
                                         f"{f}, LINEAR, LINEAR, LINEAR, LINEAR, LINEAR, HWC, HWC")]

    @trtp.aot_impl(f"{NAMESPACE}::EgestGate")
    def egest_gate_aot(h, wp, bias, frame, previous, smap, width, half, outputs, tactic) -> AotKernel:
        return tail_kernel("egest_gate", h, frame, width, half)

    @trtp.register(f"{NAMESPACE}::FuseEgest")
    def fuse_egest_desc(g: trtp.TensorDesc, wp: trtp.TensorDesc, bias: trtp.TensorDesc, noise: trtp.TensorDesc,
                        frame: trtp.TensorDesc, previous: trtp.TensorDesc, width: int, half: int) -> trtp.TensorDesc:
        return frame.like()

    @trtp.autotune(f"{NAMESPACE}::FuseEgest")
    def fuse_egest_formats(g, wp, bias, noise, frame, previous, half, outputs):
        t, f = dtypes(half)  # half is 0: the branch's features reach it as FP32 (graph.prepare_onnx)
        return [trtp.AutoTuneCombination(f"{t}, {t}, FP32, FP32, UINT8, UINT8, UINT8",
                                         f"{f}, LINEAR, LINEAR, HWC, LINEAR, LINEAR, LINEAR")]

    @trtp.aot_impl(f"{NAMESPACE}::FuseEgest")
    def fuse_egest_aot(g, wp, bias, noise, frame, previous, width, half, outputs, tactic) -> AotKernel:
        return tail_kernel("fuse_egest", g, frame, width, half)

    return [ingest_desc, ingest_formats, ingest_aot, egest_desc, egest_formats, egest_aot, egest_gate_desc,
            egest_gate_formats, egest_gate_aot, fuse_egest_desc, fuse_egest_formats, fuse_egest_aot]
