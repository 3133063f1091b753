#!/usr/bin/env bash
# The prepared GPU check: everything a short GPU lease should run, in one command.
#
#   bash benchmarks/gpu_check.sh OUTDIR             # on a CUDA machine: at most 6 minutes
#   bash benchmarks/gpu_check.sh --dry-run OUTDIR   # anywhere: the steps, their expected time and limit
#   bash benchmarks/gpu_check.sh --smoke OUTDIR     # a CPU: the same steps on small sizes, kernels in
#                                                   # Triton's interpreter (checks the code, measures nothing)
#   bash benchmarks/gpu_check.sh --pack             # here, before the lease: the one test image the tests
#                                                   # read, into .gpu_data/ (git-ignored; name it in carry)
#
# With the device tool: `--pack` here, then run `bash benchmarks/gpu_check.sh $OUT` with carry [".gpu_data"]
# and timeout_s 420, which leaves time for one rerun of a 15-minute lease.
#
# Steps, each under its own hard time limit (`timeout`), so that the limits add up to under
# 6 minutes and one step that hangs costs only its own limit:
#   probe    GPU, driver, library versions, whether torch sees the GPU
#   tests    the GPU correctness tests against their references, fp32 and fp16: every conv shape of the
#            model family, the ingest/egest kernels, the triton backend (eager and CUDA graphs), the AOT
#            cubin launched through cuda-python as the TensorRT 10.3 plugins launch it (a recurrent
#            model's tail kernels too)
#   kernels  per layer of the default model at 1920x1080, fp16: fused Triton kernels against cuDNN
#            conv + bias + ReLU (channels_last), TFLOP/s and GB/s against the datasheet and measured peaks
#   latency  whole-model latency per 720p and 1080p frame, uint8 in and out: triton backend (CUDA graphs
#            and eager), torch eager fp16 channels_last, torch.compile, ONNX Runtime's CUDA provider, NLM;
#            default-video (its last output fed back, as a stream) on triton and torch eager, fp16
#
# OUTDIR receives 8 files, none in a subfolder (what the lent machine can send back):
#   gpu_check.md (steps, statuses, the test summary), gpu_check.log (every step's output),
#   kernels_<gpu>.{json,md,png}, latency_gpu.{json,md,png}
# Exit status: 0 when every step passed, 1 when one failed or ran out of time, 2 for bad usage.
#
# Needs: python3 with torch (CUDA), triton, numpy, opencv, onnxruntime, safetensors, pytest,
# matplotlib, scikit-image (the lent H200's image has them); the checkout need not be installed.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODE=run
OUT=
for arg in "$@"; do
  case "$arg" in
    --dry-run) MODE=dry ;;
    --smoke) MODE=smoke ;;
    --pack) MODE=pack ;;
    -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) echo "gpu_check.sh: unknown option $arg (use --dry-run, --smoke or --help)" >&2; exit 2 ;;
    *) [ -z "$OUT" ] || { echo "gpu_check.sh: one OUTDIR only (got $OUT and $arg)" >&2; exit 2; }; OUT="$arg" ;;
  esac
done
. "$ROOT/benchmarks/lease.sh"  # commit_id, commit_or_packed, pick_python, machine_stamp
if [ "$MODE" = pack ]; then  # ../shared does not travel to the lent machine: the tests need one Kodak24 image
  src="${EDGEDENOISE_DATA:-$ROOT/../shared/data}/test/Kodak24"
  first=$(ls "$src" 2>/dev/null | sort | head -1)
  [ -n "$first" ] || { echo "gpu_check.sh --pack: no images in $src (set EDGEDENOISE_DATA)" >&2; exit 2; }
  mkdir -p "$ROOT/.gpu_data/test/Kodak24" && cp "$src/$first" "$ROOT/.gpu_data/test/Kodak24/" || exit 2
  echo "$(commit_id || true) (packed $(date -u +%Y-%m-%dT%H:%M:%SZ))" >"$ROOT/.gpu_data/COMMIT"
  echo "packed $ROOT/.gpu_data/test/Kodak24/$first: carry [\".gpu_data\"] in the device call"
  exit 0
fi
[ -n "$OUT" ] || { echo "usage: bash benchmarks/gpu_check.sh [--dry-run|--smoke] OUTDIR, or --pack" >&2; exit 2; }

BUDGET_S=360  # the whole check, every limit added up, must fit in this
TESTS="tests/test_kernels_boundary.py tests/test_triton_backend.py"
TESTS="$TESTS tests/test_trt_plugins.py::test_aot_cubin_launched_by_the_driver_equals_the_triton_launcher"
TESTS="$TESTS tests/test_trt_plugins.py::test_aot_recurrent_tail_launched_by_the_driver_equals_the_triton_launchers"
if [ "$MODE" = smoke ]; then  # the conv sweep already runs in the interpreter in every test run
  KERNELS_ARGS="--smoke --models small --dtypes fp16"
  LATENCY_ARGS="--gpu --smoke --models default --resolution 64x48 --frames 2 --warmup 1 --nlm-frames 2"
else
  TESTS="tests/test_kernels_conv.py $TESTS"
  KERNELS_ARGS="--models small --frames 1080p --dtypes fp16"
  LATENCY_ARGS="--gpu --models default,default-video --resolution 1920x1080,1280x720 --frames 100 --warmup 5"
  LATENCY_ARGS="$LATENCY_ARGS --nlm-frames 5"
  # 1080p first, torch.compile last in each: what the budget cuts first is the 720p compile
  LATENCY_ARGS="$LATENCY_ARGS --budget-s 95"  # cases that would start later are reported as skipped
fi

# name | expected s | limit s | command. Expected times are estimates made without a GPU: Triton compiles
# each kernel variant once (about 1-2 s each; some 50 variants over the tests, spread over 8 pytest-xdist
# workers where xdist is installed, as on the lent H200; later steps find most in Triton's cache),
# torch.compile about 30-60 s for two frame sizes; the timed work itself is a few seconds (100 frames x 6
# cases x 2 sizes at a few ms).
STEPS=(
  "probe|5|15|nvidia-smi; \$PY -c 'import os, sys, torch, triton; g = torch.cuda.is_available(); print(sys.version.split()[0], \"torch\", torch.__version__, \"triton\", triton.__version__, \"cuda\", torch.version.cuda, \"gpu\", torch.cuda.get_device_name() if g else None); sys.exit(0 if g or os.environ[\"MODE\"] == \"smoke\" else \"torch sees no CUDA GPU\")'"
  "tests|90|150|\$PY -m pytest -q -rfEs -p no:cacheprovider \$XDIST $TESTS"
  "kernels|40|65|\$PY benchmarks/kernels.py $KERNELS_ARGS --out \"\$OUT\""
  "latency|95|120|\$PY benchmarks/latency.py $LATENCY_ARGS --out \"\$OUT\""
)

field() { echo "$1" | cut -d'|' -f"$2"; }
total_expected=0; total_limit=0
for s in "${STEPS[@]}"; do
  total_expected=$((total_expected + $(field "$s" 2))); total_limit=$((total_limit + $(field "$s" 3)))
done

if [ "$MODE" = dry ]; then
  printf '%-8s %10s %8s  %s\n' step expected limit command
  for s in "${STEPS[@]}"; do
    printf '%-8s %9ss %7ss  %s\n' "$(field "$s" 1)" "$(field "$s" 2)" "$(field "$s" 3)" "$(field "$s" 4-)"
  done
  printf '%-8s %9ss %7ss  against the %s s (6 minute) budget: %s\n' total "$total_expected" "$total_limit" \
    "$BUDGET_S" "$([ "$total_limit" -le "$BUDGET_S" ] && echo within || echo OVER)"
  echo "outputs: $OUT/{gpu_check.md,gpu_check.log,kernels_<gpu>.json,kernels_<gpu>.md,kernels_<gpu>.png,latency_gpu.json,latency_gpu.md,latency_gpu.png}"
  [ "$total_limit" -le "$BUDGET_S" ]
  exit $?
fi

mkdir -p "$OUT" 2>/dev/null && [ -w "$OUT" ] || { echo "gpu_check.sh: cannot write to $OUT" >&2; exit 2; }
OUT="$(cd "$OUT" && pwd)"
cd "$ROOT"
LOG="$OUT/gpu_check.log"; : >"$LOG"

PY=$(pick_python)
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 EDGEDENOISE_DATA="${EDGEDENOISE_DATA:-$ROOT/../shared/data}"
# The kernels install as `edgedenoise_kernels` (pyproject's package-dir); an uninstalled checkout gets a link.
SHIM="$(mktemp -d)"; trap 'rm -rf "$SHIM"' EXIT
if ! "$PY" -c "import edgedenoise_kernels" 2>/dev/null; then ln -s "$ROOT/kernels" "$SHIM/edgedenoise_kernels"; fi
export PYTHONPATH="$ROOT:$SHIM${PYTHONPATH:+:$PYTHONPATH}"
if [ "$MODE" = smoke ]; then export TRITON_INTERPRET=1; else export TRITON_INTERPRET=0; fi
# The tests read the shared data; the lent machine has none beside the checkout, only what --pack carried.
[ -d "$EDGEDENOISE_DATA" ] || { [ -d "$ROOT/.gpu_data" ] && export EDGEDENOISE_DATA="$ROOT/.gpu_data"; }

# The tests compile many kernel variants, one after another in one process: spread them over workers.
XDIST=; [ "$MODE" = run ] && "$PY" -c "import xdist" 2>/dev/null && XDIST="-n 8"
export XDIST
note() { echo "[$(date -u +%H:%M:%S)] $*" | tee -a "$LOG" >&2; }
note "gpu_check ($MODE) in $ROOT, python $PY, results in $OUT; limits add up to $total_limit s"
rows=(); failed=0; t_all=$(date +%s)
for s in "${STEPS[@]}"; do
  name=$(field "$s" 1); limit=$(field "$s" 3); cmd=$(field "$s" 4-)
  [ "$MODE" = smoke ] && limit=$((limit * 4))  # the interpreter is slow; a smoke run has no lease to fit
  note "== $name (limit ${limit}s): $cmd"
  t0=$(date +%s)
  PY="$PY" OUT="$OUT" MODE="$MODE" timeout --kill-after=5 "$limit" bash -c "$cmd" >>"$LOG" 2>&1
  rc=$?; dt=$(( $(date +%s) - t0 ))
  if [ $rc -eq 0 ]; then st=ok; elif [ $rc -eq 124 ] || [ $rc -eq 137 ]; then st="timeout after ${limit}s"; else st="failed (exit $rc)"; fi
  [ $rc -eq 0 ] || failed=1
  note "== $name: $st in ${dt}s"
  rows+=("| $name | $st | $dt | $limit |")
  if [ "$name" = probe ] && [ $rc -ne 0 ]; then  # no GPU (or no torch): the other steps would only fail
    note "the probe failed: no CUDA GPU seen; the other steps are not run"
    rows+=("| tests, kernels, latency | not run: the probe failed | 0 | – |"); break
  fi
done

# The summary: stamp (the project's own: runtime.stats), steps, the tests' outcome and what they skipped or failed.
stamp=$(machine_stamp "$PY")
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
flag=$([ "$MODE" = smoke ] && echo " --smoke")
caveat=$([ "$MODE" = smoke ] && echo " A smoke run: a code check on the CPU, no figure here is a measurement.")
kmd=$(cd "$OUT" && ls kernels_*.md 2>/dev/null | head -1)
commit=$(commit_or_packed)  # the lent machine's copy has no .git: --pack noted it
tag=$(echo "$gpu" | tr 'A-Z' 'a-z' | tr -cs 'a-z0-9' '_' | sed 's/^_//; s/_$//')
{
  echo "# GPU check, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo
  echo "Made by \`bash benchmarks/gpu_check.sh$flag OUTDIR\` on $stamp; commit $commit.$caveat"
  echo
  echo "| step | status | seconds | limit s |"
  echo "|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
  echo
  echo "Total $(( $(date +%s) - t_all )) s (limits add up to $total_limit s$([ "$MODE" = smoke ] && echo ', x4 in a smoke run'); the budget is $BUDGET_S s)."
  echo
  tests=$(grep -E '^[0-9]+ (passed|failed|error)|^=+ .*(passed|failed|error)' "$LOG" | tail -1 | tr -d '=' | sed 's/^ *//')
  echo "Tests: ${tests:-not run}"
  grep -E '^(FAILED|ERROR|SKIPPED) ' "$LOG" | sed 's/^/- /' | head -30
  echo
  echo "Tables: ${kmd:-kernels_<gpu>.md (missing)} (per layer), latency_gpu.md (whole model); every step's output: gpu_check.log."
  echo "To keep: copy this folder to benchmarks/results/gpu_check_${tag:-gpu}_$(date -u +%Y-%m-%d)/ and commit it."
} >"$OUT/gpu_check.md"

n=$(find "$OUT" -type f | wc -l); deep=$(find "$OUT" -mindepth 4 -type f | wc -l)  # OUTDIR/a/b/file still comes back
[ "$n" -le 8 ] && [ "$deep" -eq 0 ] || note "warning: $n files under $OUT ($deep too deep): more than a lent machine sends back"
note "done: $([ $failed -eq 0 ] && echo 'every step passed' || echo 'a step failed'); summary $OUT/gpu_check.md"
exit $failed
