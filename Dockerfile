# mirage-ae: the one-shot reproduction image. `make docker` builds it as mirage-ae:<version>;
# `make all` then runs inside it (results/ and .cache/ mounted from the checkout).
#
# Base: CUDA 13.0 devel on Ubuntu 24.04, whose python3 is 3.12. CUDA 13.0 is what the torch 2.11.0
# wheel is built for (docker/requirements-gpu.txt); devel, not runtime, because FlashInfer compiles
# its kernels with nvcc at first use and flash-attn builds from source. The tag is pinned; its
# digest was not verified from where this file was written (no registry access): to pin it, see
# docker/README.md ("Pinning the base image") and pass --build-arg BASE_IMAGE=<tag>@sha256:<digest>.
ARG BASE_IMAGE=nvidia/cuda:13.0.2-devel-ubuntu24.04
FROM ${BASE_IMAGE}

ARG DEBIAN_FRONTEND=noninteractive
SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# Python 3.12 with venv and headers (Triton builds a small C launcher per kernel), a C compiler,
# make for the targets, git for the provenance of every result. Not version-pinned: Ubuntu's
# security updates replace these versions, and none of them changes a measured number.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        build-essential ca-certificates git make python3 python3-dev python3-venv \
    && rm -rf /var/lib/apt/lists/* \
    && git config --system --add safe.directory /workspace

WORKDIR /workspace
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1

# The core: requirements.txt with the image's torch (docker/pins.py), in the same .venv that
# `make test` builds, so every make target works unchanged inside the image.
COPY requirements.txt pyproject.toml ./
COPY docker/ docker/
RUN mkdir -p /opt/mirage \
    && python3 docker/pins.py core requirements.txt docker/requirements-gpu.txt \
        > /opt/mirage/constraints.txt \
    && python3 -m venv .venv \
    && .venv/bin/pip install --no-cache-dir -r /opt/mirage/constraints.txt

# Optional baselines (docker/requirements-baselines.txt), each on its own: a group that fails is
# recorded in /opt/mirage/baselines.txt and reported "not available" by its baseline.
# BASELINES selects groups ("none" for none); BUILD_JOBS bounds the flash-attn compile (memory).
ARG BASELINES="flashinfer liger tensorrt flash-attn"
ARG BUILD_JOBS=8
ENV PATH=/workspace/.venv/bin:${PATH}
RUN MAX_JOBS=${BUILD_JOBS} FLASH_ATTN_CUDA_ARCHS="80;90" \
    bash docker/install_baselines.sh docker/requirements-baselines.txt \
        /opt/mirage/constraints.txt /opt/mirage/baselines.txt ${BASELINES}

# Our package, from the working tree, installed as `make venv` installs it (the stamp tells make
# that .venv is up to date).
COPY . .
RUN .venv/bin/pip install --no-cache-dir --no-deps --no-build-isolation -e . \
    && touch .venv/.installed \
    && mkdir -p results .cache \
    && chmod a+rwx results .cache

ARG VERSION=unknown
ARG GIT_COMMIT=unknown
LABEL org.opencontainers.image.title="mirage-ae" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${GIT_COMMIT}" \
      org.opencontainers.image.description="Mirage reproduction: make all regenerates Figure 7, Figure 11, Table 5 and the Hopper results"
ENV MIRAGE_IN_DOCKER=1 \
    MIRAGE_IMAGE="mirage-ae:${VERSION}" \
    MIRAGE_GIT_COMMIT="${GIT_COMMIT}" \
    MIRAGE_HOME=/workspace

ENTRYPOINT ["/workspace/docker/entrypoint.sh"]
CMD ["make", "all"]
