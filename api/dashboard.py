"""The dashboard: the static files in the top-level `ui/` folder (HTML, ES modules, CSS; no build
step) served under `/ui`. They talk to Comet only through the public REST API with the user's
bearer token; `api.middleware.UI_CSP` keeps them to their own scripts, styles and API calls
(docs/decisions/0032)."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles

UI_DIR = Path(__file__).resolve().parent.parent / "ui"
UI_PATH = "/ui"


def mount_dashboard(app: FastAPI, directory: Path = UI_DIR) -> None:
    """Serve `directory` at `/ui/` (`/ui` redirects there); `index.html` is the page for `/ui/`."""
    app.mount(UI_PATH, StaticFiles(directory=directory, html=True, check_dir=True), name="ui")
