#!/usr/bin/env bash
# Set up edgedenoise on a Jetson (JetPack 6.1+: L4T R36.4, Python 3.10, TensorRT 10.3, CUDA 12.6)
# and build its TensorRT engine there. Run it on the device, from the folder that
# tools/jetson_deploy.py copied over (or from a clone of the repository):
#
#   bash tools/jetson_setup.sh                      # venv, packages, doctor, fp16 engine of the bundle's model
#   bash tools/jetson_setup.sh --check              # only say whether this device can run it, and what is missing
#   bash tools/jetson_setup.sh --dry-run            # print every command instead of running it
#
# Options: --model ONNX (default: the one models/*.onnx of the bundle, else the shipped default)
#          --precision fp16|fp32|int8 (default fp16)
#          --calib DIR (clean images; int8 needs them only where the model has no NAME.trt.int8.onnx
#                       beside it, the Q/DQ graph every shipped model and the bundle's carry)
#          --kernels native|triton|auto (default auto when build/kernels has a manifest and the
#                       precision is fp16 or fp32, else native: an INT8 engine is TensorRT's own kernels)
#          --venv DIR (default .venv)   --no-build (stop after the doctor)
#          --ort-wheel FILE (an onnxruntime-gpu wheel for JetPack; default: PyPI's CPU onnxruntime)
#
# The venv sees the system's site-packages: JetPack's TensorRT bindings and its OpenCV (built
# with GStreamer, which csi:// cameras need) come from there. Nothing here installs the
# opencv-python wheel (it would hide the system OpenCV), and NumPy stays below 2 (JetPack's
# OpenCV 4.8 and TensorRT 10.3 bindings are built against NumPy 1.x). No sudo: what needs root
# is printed for you to run.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
TEGRA_RELEASE=${TEGRA_RELEASE:-/etc/nv_tegra_release}   # overridable for the tests
PY=${PYTHON:-python3}
VENV=.venv MODEL="" PRECISION=fp16 CALIB="" KERNELS="" BUILD=1 CHECK=0 DRY=0 ORT_WHEEL=""

die() { echo "jetson_setup: error: $*" >&2; exit 2; }
say() { echo "jetson_setup: $*"; }
run() {  # print, then run unless --dry-run
  echo "+ $*"
  if [ "$DRY" = 0 ]; then "$@"; fi
}

while [ $# -gt 0 ]; do
  case "$1" in
    --check) CHECK=1 ;;
    --dry-run) DRY=1 ;;
    --no-build) BUILD=0 ;;
    --model) MODEL=${2:?--model needs a value}; shift ;;
    --precision) PRECISION=${2:?--precision needs a value}; shift ;;
    --calib) CALIB=${2:?--calib needs a value}; shift ;;
    --kernels) KERNELS=${2:?--kernels needs a value}; shift ;;
    --venv) VENV=${2:?--venv needs a value}; shift ;;
    --ort-wheel) ORT_WHEEL=${2:?--ort-wheel needs a value}; shift ;;
    -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
  shift
done
case "$PRECISION" in fp16|fp32|int8) ;; *) die "--precision must be fp16, fp32 or int8, not $PRECISION" ;; esac
if [ "$PRECISION" = int8 ] && [ -n "$KERNELS" ] && [ "$KERNELS" != native ]; then
  die "--precision int8 builds with --kernels native (the Q/DQ graph on TensorRT's own kernels), not $KERNELS"
fi

# 1. The device: L4T release, from /etc/nv_tegra_release ("# R36 (release), REVISION: 4.0, ...").
[ -r "$TEGRA_RELEASE" ] || die "not a Jetson ($TEGRA_RELEASE is missing): this script sets up JetPack devices; \
on other machines follow the README's quick start"
L4T_MAJOR=$(sed -n 's/^# R\([0-9]*\) (release).*/\1/p' "$TEGRA_RELEASE" | head -n1)
L4T_MINOR=$(sed -n 's/.*REVISION: \([0-9]*\)\..*/\1/p' "$TEGRA_RELEASE" | head -n1)
[ -n "$L4T_MAJOR" ] && [ -n "$L4T_MINOR" ] || die "cannot read the L4T release from $TEGRA_RELEASE: $(head -n1 "$TEGRA_RELEASE")"
L4T="R$L4T_MAJOR.$L4T_MINOR"
TRT_OK=1
if [ "$L4T_MAJOR" -lt 36 ]; then
  die "L4T $L4T is JetPack 5 or older (Python 3.8, TensorRT 8): edgedenoise needs JetPack >= 6.1 (L4T R36.4, \
Python 3.10, TensorRT 10.3), which Orin modules take: flash it with SDK Manager"
elif [ "$L4T_MAJOR" -eq 36 ] && [ "$L4T_MINOR" -lt 4 ]; then
  TRT_OK=0
  say "L4T $L4T is JetPack 6.0 (TensorRT 8.6): the onnxruntime backend works, TensorRT engines need JetPack >= 6.1 \
(L4T R36.4, TensorRT 10.3): sudo apt update && sudo apt dist-upgrade, then reboot"
else
  say "L4T $L4T: JetPack 6.1 or newer"
fi

# 2. What the system must provide: Python >= 3.10, TensorRT's Python bindings, OpenCV with GStreamer.
pycheck() { "$PY" -c "$1" 2>/dev/null; }
PYV=$(pycheck 'import sys; print("%d.%d" % sys.version_info[:2])') || die "$PY does not run"
pycheck 'import sys; sys.exit(sys.version_info < (3, 10))' || die "Python $PYV is too old: edgedenoise needs >= 3.10 (JetPack 6 has 3.10)"
MISSING=()
TRT_V=$(pycheck 'import tensorrt; print(tensorrt.__version__)') || TRT_V=""
if [ -z "$TRT_V" ]; then
  MISSING+=("TensorRT's Python bindings: sudo apt install python3-libnvinfer (part of nvidia-jetpack)")
  TRT_OK=0
elif [ "${TRT_V%%.*}" -lt 10 ]; then
  say "TensorRT $TRT_V: engines need TensorRT 10 (JetPack >= 6.1); the onnxruntime backend still works"
  TRT_OK=0
fi
CV_V=$(pycheck 'import cv2; print(cv2.__version__)') || CV_V=""
if [ -z "$CV_V" ]; then
  MISSING+=("OpenCV for Python 3 with GStreamer: sudo apt install nvidia-opencv (JetPack's OpenCV 4.8)")
elif ! pycheck 'import cv2, re, sys; sys.exit(not re.search(r"GStreamer:\s*YES", cv2.getBuildInformation()))'; then
  MISSING+=("GStreamer in OpenCV $CV_V (csi:// and gst: sources need it): \
pip uninstall opencv-python opencv-python-headless, then sudo apt install nvidia-opencv")
fi
say "Python $PYV, TensorRT ${TRT_V:-none}, OpenCV ${CV_V:-none}"
if [ ${#MISSING[@]} -gt 0 ]; then
  for m in "${MISSING[@]}"; do say "missing: $m"; done
fi
if [ "$CHECK" = 1 ]; then
  [ ${#MISSING[@]} -eq 0 ] && [ "$TRT_OK" = 1 ] && say "ready" && exit 0
  exit 1
fi
[ -z "$CV_V" ] && die "install OpenCV first (see above)"

# 3. The venv: system site-packages visible (tensorrt, cv2), the package without its `runtime`
#    extra (no opencv wheel), NumPy 1.x, ONNX Runtime, cuda-python for TensorRT's buffers.
run "$PY" -m venv --system-site-packages "$VENV"
PIP=("$VENV/bin/python" -m pip install -q)
run "${PIP[@]}" --upgrade pip
run "${PIP[@]}" "numpy>=1.23,<2" -e "$ROOT"
if [ -n "$ORT_WHEEL" ]; then
  run "${PIP[@]}" "$ORT_WHEEL"
else
  run "${PIP[@]}" "onnxruntime>=1.16"
fi
[ "$TRT_OK" = 1 ] && run "${PIP[@]}" "cuda-python>=12.6,<13"
run "$VENV/bin/edgedenoise" doctor || say "doctor reported a backend that does not work (above); going on"

# 4. The engine, built on the device itself (engines are tied to the GPU and TensorRT version).
if [ "$BUILD" = 0 ]; then
  say "done (--no-build): $VENV/bin/edgedenoise run --source csi://0 --sink display"
  exit 0
fi
if [ "$TRT_OK" = 0 ]; then
  say "no TensorRT 10 here: skipping the engine; the onnxruntime backend runs: $VENV/bin/edgedenoise run"
  exit 0
fi
if [ -z "$MODEL" ]; then
  # the bundle's model: its recurrent variant NAME-video.onnx beside NAME.onnx is not a model of its own here
  mapfile -t ALL < <(find models -maxdepth 1 -name '*.onnx' ! -name '*.frame.onnx' ! -name '*.int8.onnx' 2>/dev/null | sort)
  FOUND=()
  for f in "${ALL[@]}"; do
    case "$f" in *-video.onnx) [ -f "${f%-video.onnx}.onnx" ] && continue ;; esac
    FOUND+=("$f")
  done
  if [ ${#FOUND[@]} -eq 1 ]; then MODEL=${FOUND[0]}
  elif [ ${#FOUND[@]} -gt 1 ]; then die "several models in models/ (${FOUND[*]}): choose one with --model"
  else MODEL=edgedenoise/models/small.onnx
  fi
fi
[ -f "$MODEL" ] || die "model $MODEL not found"
if [ "$PRECISION" = int8 ] && [ -z "$CALIB" ] && [ ! -f "${MODEL%.onnx}.trt.int8.onnx" ]; then
  die "--precision int8: $MODEL has no Q/DQ graph beside it (${MODEL%.onnx}.trt.int8.onnx): give --calib DIR (a folder of clean images like the scenes you will film)"
fi
if [ -z "$KERNELS" ]; then
  if [ -f build/kernels/manifest.json ] && [ "$PRECISION" != int8 ]; then KERNELS=auto; else KERNELS=native; fi
fi
STEM=$(basename "$MODEL" .onnx)
ENGINE=engines/$STEM.$PRECISION.engine
run mkdir -p engines
BUILD_CMD=("$VENV/bin/edgedenoise" build "$MODEL" --out "$ENGINE" --precision "$PRECISION" --kernels "$KERNELS")
[ "$KERNELS" != native ] && BUILD_CMD+=(--kernels-dir build/kernels)
[ -n "$CALIB" ] && BUILD_CMD+=(--calib "$CALIB")
run "${BUILD_CMD[@]}"
say "engine: $ENGINE. For steady timings first run: sudo nvpmodel -m 0 && sudo jetson_clocks"
RUN_ENV=""
VARIANT="${MODEL%.onnx}-video.onnx"  # the bundle's recurrent variant (default -> default-video): its engine too
if [ -f "$VARIANT" ]; then
  VENGINE=engines/$(basename "$VARIANT" .onnx).$PRECISION.engine
  VBUILD=("${BUILD_CMD[@]}")
  VBUILD[2]=$VARIANT
  VBUILD[4]=$VENGINE
  if run "${VBUILD[@]}"; then
    say "engine: $VENGINE (the recurrent variant: run --temporal auto, the default for a stream, uses it)"
    RUN_ENV="EDGEDENOISE_ENGINES=$ROOT/engines "  # where the runtime looks for the variant's engine
  else
    say "the variant's engine was not built (above): run keeps the blend on $ENGINE"
  fi
fi
say "measure: $VENV/bin/edgedenoise bench --backend tensorrt --model $ENGINE --resolution 1280x720,1920x1080"
say "stream:  $RUN_ENV$VENV/bin/edgedenoise run --backend tensorrt --model $ENGINE --source csi://0 --sink display"
