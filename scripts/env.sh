# Sourced by the run/up/test/bench scripts: the environment every Comet process gets.
# Dev-only secrets are generated once into $COMET_HOME/dev.env (git-ignored), never committed.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
if [ ! -f "$COMET_HOME/dev.env" ]; then
  umask 077
  {
    echo "COMET_JWT_SECRET=$(head -c 48 /dev/urandom | base64 | tr -d '\n/+=')"
    echo "COMET_SECRET_KEY=$(head -c 48 /dev/urandom | base64 | tr -d '\n/+=')"
  } > "$COMET_HOME/dev.env"
fi
set -a
# shellcheck disable=SC1091
source "$COMET_HOME/dev.env"
set +a
export COMET_DATABASE_URL="${COMET_DATABASE_URL:-postgresql+asyncpg://${COMET_PG_USER:-comet}:${COMET_PG_PASSWORD:-comet}@127.0.0.1:${COMET_PG_PORT:-15432}/${COMET_PG_DB:-comet}}"
export COMET_KAFKA_BOOTSTRAP_SERVERS="${COMET_KAFKA_BOOTSTRAP_SERVERS:-127.0.0.1:${COMET_KAFKA_PORT:-9092}}"
export COMET_API_HOST="${COMET_API_HOST:-127.0.0.1}"
export COMET_API_PORT="${COMET_API_PORT:-8000}"
export COMET_GIT_CACHE_DIR="${COMET_GIT_CACHE_DIR:-$COMET_HOME/git-cache}"
# Stages' workspaces live outside this checkout: tools that look upward for their configuration
# (pytest's rootdir, eslint) must find the stage's own files, not Comet's.
export COMET_WORKSPACE_DIR="${COMET_WORKSPACE_DIR:-${TMPDIR:-/tmp}/comet-$(id -u)/workspaces}"
COMET="$ROOT/.venv/bin/comet"
