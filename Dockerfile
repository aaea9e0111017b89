# One image for every kfp-yolo step: KFP components (base_image, nothing pip-installed at run
# time), the PyTorchJob training pods, the TensorRT build on a GPU pool.
#
# CUDA comes from PyPI: torch 2.14.1 is a CUDA 13 build whose wheels pull the NVIDIA libraries
# (cuDNN, NCCL, cuBLAS ...), and tensorrt-cu13 brings TensorRT's; only the driver (>= 580) comes
# from the node, mounted by the NVIDIA container toolkit. So a slim Python base is enough.
#
# There is no Docker engine on the development machines: this file is linted (hadolint, in
# tests/unit/test_dockerfile.py), not built there.
#
#   docker build -t ghcr.io/kfp-yolo/kfp-yolo:0.1.0 .

FROM python:3.11.14-slim-bookworm

LABEL org.opencontainers.image.title="kfp-yolo" \
      org.opencontainers.image.description="YOLO training, export and TensorRT build as a Kubeflow Pipelines DAG" \
      org.opencontainers.image.licenses="AGPL-3.0-or-later"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# OpenCV (ultralytics' image I/O) needs libGL and GLib at import time. Not version-pinned: the
# base tag fixes the Debian release, and its archive drops superseded point versions after each
# security update, so a pinned version would only break later builds.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 \
 && rm -rf /var/lib/apt/lists/*

# Dependencies first, pinned, in their own layer: it changes far less often than the code.
# ultralytics is pinned exactly (its internals change within 8.4.x); CPU onnxruntime is enough
# for the ONNX parity check, TensorRT does the GPU inference.
RUN pip install --no-cache-dir \
      torch==2.14.1 \
      torchvision==0.29.1 \
      tensorrt-cu13==11.4.0.106 \
      ultralytics==8.4.190 \
      kfp==2.17.3 \
      kfp-kubernetes==2.17.3 \
      kubernetes==30.1.0 \
      minio==7.2.20 \
      mlflow-skinny==3.17.2 \
      model-registry==0.3.18 \
      optuna==5.0.0 \
      aiohttp==3.14.5 \
      onnx==1.23.2 \
      onnxruntime==1.32.0 \
      onnxslim==0.1.98 \
      pydantic==2.14.4 \
      PyYAML==6.0.4

COPY pyproject.toml README.md /tmp/src/
COPY components /tmp/src/components
COPY pipelines /tmp/src/pipelines
# components/node-pools.yaml links to the catalog in k8s/: the wheel carries it as package data.
COPY k8s/node-pools.yaml /tmp/src/k8s/node-pools.yaml

# The package itself, installed as any user installs it (its dependencies are all above; pip
# check proves it): everything lands under the kfp_yolo namespace, the catalog included.
RUN pip install --no-cache-dir --no-deps /tmp/src \
 && pip check \
 && python -c "from kfp_yolo.components.k8s.pools import load_pools; load_pools()" \
 && rm -rf /tmp/src

# Offline at run time: ultralytics downloads nothing and installs nothing, pip cannot
# reach an index, and every cache goes to /tmp, writable even with a read-only root filesystem
# (mount an emptyDir there).
ENV YOLO_OFFLINE=true \
    YOLO_AUTOINSTALL=false \
    YOLO_CONFIG_DIR=/tmp/ultralytics \
    MPLBACKEND=Agg \
    MPLCONFIGDIR=/tmp/matplotlib \
    PIP_NO_INDEX=1 \
    HOME=/home/kfp

RUN groupadd --gid 10001 kfp \
 && useradd --uid 10001 --gid 10001 --create-home --home-dir /home/kfp --shell /usr/sbin/nologin kfp

WORKDIR /home/kfp
# Numeric, so that Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001

CMD ["kfp-yolo", "--help"]
