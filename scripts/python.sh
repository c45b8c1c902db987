#!/usr/bin/env bash
# Runs Python inside the project's locked environment, installing uv and the locked dependencies first
# when they are missing.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
if ! command -v uv >/dev/null 2>&1; then
  for c in "$HOME/.local/bin/uv" "$HOME/.cargo/bin/uv"; do [ -x "$c" ] && export PATH="$(dirname "$c"):$PATH"; done
fi
if ! command -v uv >/dev/null 2>&1; then
  say "installing uv from PyPI"
  python3 -m pip install --quiet --user "uv==0.13.8" >&2 || python3 -m pip install --quiet --break-system-packages "uv==0.13.8" >&2
  export PATH="$HOME/.local/bin:$PATH"
fi
cd "$ROOT"
[ -x "$ROOT/.venv/bin/python" ] && [ "$ROOT/.venv/.synced" -nt "$ROOT/uv.lock" ] || { uv sync --frozen --quiet >&2 && touch "$ROOT/.venv/.synced"; }
exec "$ROOT/.venv/bin/python" "$@"
