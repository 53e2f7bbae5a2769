# The fairgate gateway: `fairgate serve` as a non-root user on a read-only root filesystem.
# Build with docker/build (it passes VERSION from pyproject.toml); BASE may be any Debian
# bookworm image with python3.11 and its venv module (docker/build can make one with debootstrap).
ARG BASE=docker.io/library/python:3.11-slim-bookworm

FROM ${BASE} AS wheel
WORKDIR /src
COPY pyproject.toml README.md ./
COPY fairgate ./fairgate
COPY gateway ./gateway
COPY scheduler ./scheduler
COPY replicas ./replicas
COPY metering ./metering
RUN python3 -m venv /opt/build \
    && /opt/build/bin/pip install --no-cache-dir --quiet "setuptools>=77" wheel \
    && /opt/build/bin/pip wheel --no-cache-dir --no-deps --no-build-isolation --quiet -w /wheels .

FROM ${BASE}
ARG VERSION
ARG RAY_VERSION=2.60.0
LABEL org.opencontainers.image.title="fairgate-gateway" \
      org.opencontainers.image.description="fairgate: OpenAI-compatible LLM gateway over Ray-managed vLLM replicas" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      io.fairgate.ray-version="${RAY_VERSION}"
COPY --from=wheel /wheels /wheels
# `audit`: the embedding fingerprints of audit protocol 2. Ray's client (the gateway joins a
# KubeRay cluster with ray://) must match the cluster's Ray.
RUN test -n "${VERSION}" \
    && python3 -m venv /opt/fairgate \
    && /opt/fairgate/bin/pip install --no-cache-dir --quiet \
        "$(ls /wheels/fairgate-${VERSION}-*.whl)[postgres,audit]" "ray[client]==${RAY_VERSION}" \
    && rm -rf /wheels \
    && groupadd --system --gid 10001 fairgate \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/fairgate --no-create-home \
        --shell /usr/sbin/nologin fairgate \
    && install -d -o 10001 -g 10001 -m 0750 /var/lib/fairgate /run/fairgate
ENV PATH=/opt/fairgate/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    HF_HOME=/var/lib/fairgate/huggingface
USER 10001:10001
WORKDIR /var/lib/fairgate
VOLUME ["/var/lib/fairgate"]
EXPOSE 8000
ENTRYPOINT ["fairgate"]
CMD ["serve", "--config", "/run/fairgate/config.yaml"]
