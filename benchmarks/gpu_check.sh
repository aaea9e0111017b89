#!/usr/bin/env bash
# GPU checks on a lent machine: installs what its python3 lacks, then runs one check.
#   default     gpu_train_check.py (issue 4): yolov5l 640 AMP through our worker under torchrun;
#               images/s and peak memory -> $OUT/gpu_train_check.json
#   throughput  gpu_throughput.py (issue 14): plain ultralytics vs kfp-yolo `batch: 0` vs the
#               no-dataloader ceiling, planner vs measured peak, a step profile (~4 min on an
#               H200, within 8 with installs) -> $OUT/gpu_throughput.json
#
#   bash benchmarks/gpu_check.sh --fetch-wheels        # here, where PyPI answers: fills $WHEELS (~55 MB)
#   bash benchmarks/gpu_check.sh [ARGS...]             # on the GPU machine: gpu_train_check.py ARGS
#   bash benchmarks/gpu_check.sh throughput [ARGS...]  # on the GPU machine: gpu_throughput.py ARGS
#   bash benchmarks/gpu_check.sh throughput --dry-run  # anywhere: the throughput script, tiny, on CPU
#
# The lent GPU machines reach no package index; their python3 holds a CUDA torch, torchvision,
# opencv, scipy, matplotlib, psutil and nvidia-ml-py, not ultralytics, polars or kfp. Fetch those
# wheels here first, then carry them, from the repo root:
#   run(command="bash benchmarks/gpu_check.sh throughput", carry=[".venv/gpu-wheels"],
#       timeout_s=540)
# (.venv/ is git-ignored, so the wheels travel only when carry names them.) On a CUDA machine
# with an index, nothing needs fetching: `pip install -e .` is tried instead.
# Without an NVIDIA GPU it prints why and exits 0.
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=${WHEELS:-.venv/gpu-wheels}
OUT=${OUT:-$PWD/gpu-check-out}
PY=${PYTHON:-python3}
# The exact versions pyproject pins (ultralytics' internals change within 8.4.x); kfp only for
# its dsl types, which import without the client's dependencies when _KFP_RUNTIME=true.
PACKAGES=(ultralytics==8.4.190 ultralytics-thop==2.2.3 polars==2.1.0 polars-runtime-32==2.1.0
          kfp==2.17.3 kfp-pipeline-spec==2.17.3 docstring-parser==0.18.0)

if [[ "${1:-}" == "--fetch-wheels" ]]; then
    mkdir -p "$WHEELS"
    # The GPU machines' python3 is 3.12 on x86_64.
    "$PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
        --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
        -d "$WHEELS" "${PACKAGES[@]}"
    du -sh "$WHEELS"
    exit 0
fi

SCRIPT=benchmarks/gpu_train_check.py
RESULT=gpu_train_check.json
if [[ "${1:-}" == "throughput" ]]; then
    shift
    SCRIPT=benchmarks/gpu_throughput.py
    RESULT=gpu_throughput.json
fi
DRY_RUN=false
for arg in "$@"; do [[ "$arg" == "--dry-run" || "$arg" == "--cpu-smoke" ]] && DRY_RUN=true; done

mkdir -p "$OUT"
if ! $DRY_RUN && { ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; }; then
    echo "skipped: no NVIDIA GPU here (nvidia-smi is missing or lists no device)"
    echo '{"status": "skipped", "reason": "no NVIDIA GPU (nvidia-smi)"}' >"$OUT/$RESULT"
    exit 0
fi
$DRY_RUN || nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader

export _KFP_RUNTIME=true
if ! "$PY" -c "import ultralytics, polars, kfp.dsl" 2>/dev/null; then
    SITE=$PWD/.gpu-site  # installed beside the machine's own packages, which keep their torch
    if compgen -G "$WHEELS/*.whl" >/dev/null; then
        "$PY" -m pip install --quiet --no-index --no-deps --target "$SITE" "$WHEELS"/*.whl
        export PYTHONPATH=$SITE${PYTHONPATH:+:$PYTHONPATH}
    elif "$PY" -m venv .venv-gpu && .venv-gpu/bin/pip install --quiet -e .; then
        PY=.venv-gpu/bin/python
    else
        echo "cannot install ultralytics, polars and kfp: no wheels in $WHEELS and no package" \
             "index; run 'bash benchmarks/gpu_check.sh --fetch-wheels' where PyPI answers and" \
             "carry $WHEELS" >&2
        exit 2
    fi
fi
# kfp_yolo from this checkout, without installing it: a namespace folder whose components/ and
# pipelines/ are the repo's (pyproject's package-dir mapping); torchrun's workers run
# `-m kfp_yolo.components.training.worker` and find it through PYTHONPATH too.
if ! "$PY" -c "import kfp_yolo.components" 2>/dev/null; then
    SHIM=$(mktemp -d)  # outside the checkout: nothing to ignore or clean there
    mkdir -p "$SHIM/kfp_yolo"
    ln -sfn "$PWD/components" "$SHIM/kfp_yolo/components"
    ln -sfn "$PWD/pipelines" "$SHIM/kfp_yolo/pipelines"
    export PYTHONPATH=$SHIM${PYTHONPATH:+:$PYTHONPATH}
fi
"$PY" "$SCRIPT" --out "$OUT" "$@"
