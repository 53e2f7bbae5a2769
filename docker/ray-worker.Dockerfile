# Ray head and GPU workers of the fairgate chart's RayCluster: fairgate with the `gpu` extra
# (vLLM for CUDA, Ray) on a CUDA base. The gateway's Ray client needs the same Python minor
# version (3.11) and the same Ray version as this image. KubeRay starts pods with
# `bash -lc "ulimit -n 65536; ray start ..."` and probes them with wget: both are installed.
ARG BASE=docker.io/nvidia/cuda:12.8.1-base-ubuntu22.04

FROM ${BASE}
ARG VERSION
ARG RAY_VERSION=2.60.0
LABEL org.opencontainers.image.title="fairgate-ray" \
      org.opencontainers.image.description="Ray node with fairgate's vLLM engine actors (CUDA)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      io.fairgate.ray-version="${RAY_VERSION}"
ENV DEBIAN_FRONTEND=noninteractive
# Unpinned: the base tag fixes the Ubuntu release, and its security updates should come in.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        python3.11 python3.11-venv python3.11-dev build-essential \
        bash wget ca-certificates tini \
    && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml README.md /src/
COPY fairgate /src/fairgate
COPY gateway /src/gateway
COPY scheduler /src/scheduler
COPY replicas /src/replicas
COPY metering /src/metering
# Ray's images use uid 1000 in group 100 ("users"); the chart's Ray securityContext does too.
RUN test -n "${VERSION}" \
    && python3.11 -m venv /opt/fairgate \
    && /opt/fairgate/bin/pip install --no-cache-dir --quiet "/src[gpu]" "ray[default]==${RAY_VERSION}" \
    && rm -rf /src \
    && useradd --uid 1000 --gid 100 --create-home --home-dir /home/ray --shell /bin/bash ray \
    && install -d -o 1000 -g 100 /models
ENV PATH=/opt/fairgate/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HF_HOME=/models \
    VLLM_NO_USAGE_STATS=1 \
    DO_NOT_TRACK=1
USER 1000:100
WORKDIR /home/ray
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["ray", "start", "--head", "--block"]
