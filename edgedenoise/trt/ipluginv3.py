"""The Python IPluginV3 plugins: how TensorRT 10.3 (JetPack 6) runs the fused boundary kernels.

TensorRT 10.3 has no `tensorrt.plugin` (Quickly Deployable Plugins need >= 10.6, ahead-of-time
ones >= 10.9), so `Ingest` and `Egest` (and a recurrent graph's `EgestGate` and `FuseEgest`) are
Python `IPluginV3` classes with their `IPluginCreatorV3One` creators. Their enqueue takes the
target's AOT cubin from the registered kernel set and launches it on TensorRT's stream with the
planned grid and packed arguments (launch.py). Feature maps are channel-last (plugins.py says in which formats).

The classes are built on the tensorrt module given (`v3_classes(trt, kernels)`), so that a stand-in
for it can check them where TensorRT is not installed; `kernels` is the function that returns the
registered kernel set (plugins.registered_kernels, passed in: this module does not import plugins.py,
which imports it).
"""
from __future__ import annotations

import numpy as np

from .aot_kernels import NAMESPACE, PLUGIN_IO, PLUGIN_NAMES, KernelsError
from .launch import egest_launch, half_grid, ingest_launch


def v3_classes(trt, kernels):
    """{kind: (IPluginV3 plugin class, IPluginCreatorV3One class)}, built on the given tensorrt
    module; `kernels()` returns the KernelSet their enqueue launches from."""
    DT, TF = trt.DataType, trt.TensorFormat

    class _Boundary(trt.IPluginV3, trt.IPluginV3OneCore, trt.IPluginV3OneBuild, trt.IPluginV3OneRuntime):
        kind = ""
        field_names = ("width", "half")

        def __init__(self, fields: dict | None = None):
            trt.IPluginV3.__init__(self)
            trt.IPluginV3OneCore.__init__(self)
            trt.IPluginV3OneBuild.__init__(self)
            trt.IPluginV3OneRuntime.__init__(self)
            self.plugin_name = PLUGIN_NAMES[self.kind]
            self.plugin_namespace = NAMESPACE
            self.plugin_version = "1"
            self.num_outputs = len(PLUGIN_IO[self.kind][1])
            self.timing_cache_id = ""
            self.fields = {k: int(v) for k, v in (fields or {}).items()}
            missing = [k for k in self.field_names if k not in self.fields]
            if fields is not None and missing:
                raise KernelsError(f"{NAMESPACE}::{self.plugin_name}: missing plugin field(s) {', '.join(missing)}")

        @property
        def dtype(self) -> str:
            return "fp16" if self.fields["half"] else "fp32"

        def _feature(self):  # (type, format) of the channel-last feature map
            return (DT.HALF, TF.HWC8) if self.fields["half"] else (DT.FLOAT, TF.HWC)

        def get_capability_interface(self, type):
            return self

        def clone(self):
            twin = type(self)(dict(self.fields))
            twin.__dict__.update(self.__dict__)
            return twin

        def get_fields_to_serialize(self):
            int32 = trt.PluginFieldType.INT32
            return trt.PluginFieldCollection([trt.PluginField(k, np.array([v], dtype=np.int32), int32)
                                              for k, v in self.fields.items()])

        def supports_format_combination(self, pos, in_out, num_inputs):
            want = self._io()
            desc = in_out[pos].desc
            return pos < len(want) and (desc.type, desc.format) == want[pos]

        def configure_plugin(self, inp, out):
            pass

        def on_shape_change(self, inp, out):
            pass

        def attach_to_context(self, context):
            return self.clone()

        def enqueue(self, input_desc, output_desc, inputs, outputs, workspace, stream):
            ks = kernels()
            k = ks.kernel(self.kind, self.fields["width"], self.dtype)
            ptrs = dict(zip(PLUGIN_IO[self.kind][0], inputs)) | dict(zip(PLUGIN_IO[self.kind][1], outputs))
            ks.launch(k, self._launch(k, input_desc, output_desc, ptrs), stream)

    class IngestPlugin(_Boundary):
        kind = "ingest"
        field_names = ("multiple", "width", "half")

        def _io(self):
            feat = self._feature()  # frame, wp, bias, sigma -> features
            return [(DT.UINT8, TF.LINEAR), (feat[0], TF.LINEAR), (DT.FLOAT, TF.LINEAR), (DT.FLOAT, TF.LINEAR), feat]

        def get_output_data_types(self, input_types, ranks=None):
            return [self._feature()[0]]

        def get_output_shapes(self, inputs, shape_inputs, expr_builder):
            frame, m = inputs[0], self.fields["multiple"]
            op = trt.DimensionOperation

            def half(d):  # ceil(d / m) * (m / 2)
                return expr_builder.operation(op.PROD, expr_builder.operation(op.CEIL_DIV, d, expr_builder.constant(m)),
                                              expr_builder.constant(m // 2))

            out = trt.DimsExprs(4)
            out[0], out[1], out[2], out[3] = frame[0], expr_builder.constant(self.fields["width"]), half(frame[1]), \
                half(frame[2])
            return [out]

        def _launch(self, k, input_desc, output_desc, ptrs):
            n, h, w, _ = tuple(input_desc[0].dims)
            launch = ingest_launch(k, n, h, w, self.fields["multiple"], ptrs)
            if tuple(output_desc[0].dims) != (n, k.width, *half_grid(h, w, self.fields["multiple"])):
                raise KernelsError(f"Ingest output {tuple(output_desc[0].dims)} does not match the frame {w}x{h}")
            return launch

    class _Tail(_Boundary):
        """A kernel on the half-resolution grid of the features (input 0) that also reads the uint8
        frame (input `frame_at`) and writes it (Egest, FuseEgest) or the noise (EgestGate)."""

        frame_at = 3

        def get_output_data_types(self, input_types, ranks=None):
            return [DT.UINT8]

        def get_output_shapes(self, inputs, shape_inputs, expr_builder):
            return [trt.DimsExprs(inputs[self.frame_at])]  # the frame's shape

        def _launch(self, k, input_desc, output_desc, ptrs):
            n, c, hh, wh = tuple(input_desc[0].dims)
            _, h, w, _ = tuple(input_desc[self.frame_at].dims)
            if c != k.width:
                raise KernelsError(f"{self.plugin_name} features have {c} channels, the kernel {k.width}")
            if self.frame_at == 4 and tuple(input_desc[3].dims) != (n, 12, hh, wh):
                raise KernelsError(f"{self.plugin_name}: the noise {tuple(input_desc[3].dims)} is not on the "
                                   f"features' grid {(n, 12, hh, wh)}")
            return egest_launch(k, n, h, w, hh, wh, ptrs)

    class EgestPlugin(_Tail):
        kind = "egest"

        def _io(self):
            feat = self._feature()  # features, wp, bias, frame -> frame
            return [feat, (feat[0], TF.LINEAR), (DT.FLOAT, TF.LINEAR), (DT.UINT8, TF.LINEAR), (DT.UINT8, TF.LINEAR)]

    class EgestGatePlugin(_Tail):
        """A recurrent model's tail: features, wp, bias, frame, previous, the scaled noise map ->
        the noise (N, 12, HH, WH) and the gate branch's input (N, 3, HH, WH), both FP32 channel-last."""

        kind = "egest_gate"

        def _io(self):
            feat, u8, f32 = self._feature(), (DT.UINT8, TF.LINEAR), (DT.FLOAT, TF.LINEAR)
            return [feat, (feat[0], TF.LINEAR), f32, u8, u8, f32, (DT.FLOAT, TF.HWC), (DT.FLOAT, TF.HWC)]

        def get_output_data_types(self, input_types, ranks=None):
            return [DT.FLOAT, DT.FLOAT]

        def get_output_shapes(self, inputs, shape_inputs, expr_builder):
            h = inputs[0]
            outs = []
            for c in (12, 3):
                d = trt.DimsExprs(4)
                d[0], d[1], d[2], d[3] = h[0], expr_builder.constant(c), h[2], h[3]
                outs.append(d)
            return outs

    class FuseEgestPlugin(_Tail):
        """The gate branch's features (FP32 channel-last), wp, bias, noise, frame, previous -> frame."""

        kind = "fuse_egest"
        frame_at = 4

        def _io(self):
            feat, u8 = self._feature(), (DT.UINT8, TF.LINEAR)
            return [feat, (feat[0], TF.LINEAR), (DT.FLOAT, TF.LINEAR), (DT.FLOAT, TF.HWC), u8, u8, u8]

    def creator(plugin_cls):
        class Creator(trt.IPluginCreatorV3One):
            def __init__(self):
                trt.IPluginCreatorV3One.__init__(self)
                self.name = PLUGIN_NAMES[plugin_cls.kind]
                self.plugin_namespace = NAMESPACE
                self.plugin_version = "1"
                self.field_names = trt.PluginFieldCollection(
                    [trt.PluginField(k, np.array([], dtype=np.int32), trt.PluginFieldType.INT32)
                     for k in plugin_cls.field_names])

            def create_plugin(self, name, *args):  # (name, fc, phase); newer bindings add the namespace
                fc = args[-2]
                return plugin_cls({f.name: int(np.asarray(f.data).reshape(-1)[0]) for f in fc})

        return Creator

    plugins = (IngestPlugin, EgestPlugin, EgestGatePlugin, FuseEgestPlugin)
    return {p.kind: (p, creator(p)) for p in plugins}


def register(trt, kernels) -> list:
    """Register every creator with TensorRT's plugin registry (`kernels()`: the KernelSet to launch
    from); returns them (keep them alive: the registry does not keep the Python objects)."""
    registry = trt.get_plugin_registry()
    keep = []
    for _, cls in v3_classes(trt, kernels).values():
        c = cls()
        keep.append(c)
        if not registry.register_creator(c, NAMESPACE):
            raise KernelsError(f"TensorRT refused the plugin creator {NAMESPACE}::{c.name} (registered twice?)")
    return keep
