# One image for every Comet process (api, orchestrator, worker, migrate); compose.yaml picks the
# subcommand. Build: docker build -t comet .
FROM python:3.11-slim

# git: workers check out commits; bash: stages run under `bash -eo pipefail`;
# ca-certificates: HTTPS clones and OAuth providers.
RUN apt-get update \
 && apt-get install -y --no-install-recommends git bash ca-certificates \
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

# Stages run as this unprivileged user, never as root.
RUN useradd --create-home --uid 10001 comet \
 && mkdir -p /app/.comet \
 && chown -R comet:comet /app/.comet
USER comet

EXPOSE 8000
CMD ["comet", "--help"]
