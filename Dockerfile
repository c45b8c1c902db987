# One image for every Comet process (api, orchestrator, worker, migrate): the entrypoint is
# `comet`, the arguments pick the subcommand (compose.yaml `command:`, deploy/k8s `args:`).
# Build: docker build -t comet .   (no container engine runs on the development machines: this
# file is checked by reading, and the Kubernetes manifests by `make k8s-check`, never by a build)
FROM python:3.11-slim

# git: workers check out commits; bash: stages run under `bash -eo pipefail`;
# ca-certificates: HTTPS clones and OAuth providers; tini: PID 1, reaps stage processes that
# outlive their parents (a pod has no init of its own).
RUN apt-get update \
 && apt-get install -y --no-install-recommends git bash ca-certificates tini \
 && rm -rf /var/lib/apt/lists/*

# uv from PyPI, pinned to the version the lock file was made with.
RUN pip install --no-cache-dir uv==0.13.8

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv \
    PATH=/app/.venv/bin:$PATH

WORKDIR /app

# Dependencies first (a layer that survives source edits), then the project itself.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project

COPY . .
# The project is installed editable on purpose: `comet migrate` finds alembic.ini and alembic/
# next to the source tree.
RUN uv sync --frozen --no-dev

# Stages run as this unprivileged user, never as root. Numeric, so Kubernetes' runAsNonRoot can
# verify it. Everything a process writes is outside /app, which may be a read-only root
# filesystem: stages' workspaces, the git mirrors, the history archives (and /tmp, the home).
# deploy/k8s mounts volumes on each of these paths.
RUN groupadd --gid 10001 comet \
 && useradd --create-home --uid 10001 --gid 10001 comet \
 && mkdir -p /workspace /var/cache/comet/git /var/lib/comet/archives \
 && chown -R 10001:10001 /workspace /var/cache/comet /var/lib/comet
ENV COMET_WORKSPACE_DIR=/workspace \
    COMET_GIT_CACHE_DIR=/var/cache/comet/git \
    COMET_ARCHIVE_DIR=/var/lib/comet/archives
USER 10001:10001

# 8000: the API (COMET_API_PORT); 9100: orchestrators' and workers' health and metrics when
# COMET_HEALTH_PORT is set to it (deploy/k8s does).
EXPOSE 8000 9100
ENTRYPOINT ["/usr/bin/tini", "--", "comet"]
CMD ["--help"]
