"""The API docs pages, `/docs` (Swagger UI) and `/redoc` (ReDoc), served with every asset they load
from Comet itself: they work on a network without internet (decision 0031).

Swagger UI's and ReDoc's files and the favicon come from the `fastapi-offline` package (installed
from the lockfile, like every dependency); `docs_assets/` holds the one file of our own, ReDoc's
start-up script. The assets are served under `/docs/assets/<digest>/`, where the digest covers
every file's bytes: an upgrade changes the URL, so the files can be cached for a year as immutable.

Each page sets its own Content-Security-Policy (`api.middleware.docs_csp`): nothing from another
host and no 'unsafe-inline'. The Swagger UI page's inline start-up script (FastAPI's own page) is
allowed by its SHA-256; ReDoc's injected `<style>` elements by a nonce drawn for each response.
None of these routes is in the OpenAPI document, and none needs a credential, like the docs always.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import html
import importlib.resources
import os
import re
import secrets
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from starlette.responses import HTMLResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from api.middleware import docs_csp

ASSETS_PREFIX = "/docs/assets"
# The fastapi-offline files this module links to, with our own script beside them.
SWAGGER_JS = "swagger-ui-bundle.js"
SWAGGER_CSS = "swagger-ui.css"
REDOC_JS = "redoc.standalone.js"
REDOC_INIT_JS = "redoc-init.js"
FAVICON = "favicon.png"
IMMUTABLE = "public, max-age=31536000, immutable"

_PACKAGE_ASSETS = ("fastapi_offline", "static")
# ReDoc's bundle inserts perfect-scrollbar's stylesheet as a <style> element while it loads, before
# redoc-init.js can hand ReDoc the nonce: it is allowed by its hash (and by the empty element's, as
# first inserted). The hash belongs to the ReDoc bundle of fastapi-offline 1.7.7; a test pins that
# bundle, and a browser names the new hash in its console if an upgrade changes the stylesheet.
REDOC_LOAD_STYLES = "'sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=' 'sha256-QMIg+bpjm3JdElJ388KYke01izlUW0UoNOeKjpMxdgc='"
_OWN_ASSETS = Path(__file__).parent / "docs_assets"
_INLINE_SCRIPT = re.compile(r"<script(?![^>]*\ssrc=)[^>]*>(.*?)</script>", re.DOTALL | re.IGNORECASE)


def _package_assets() -> Path:
    package, folder = _PACKAGE_ASSETS
    return Path(str(importlib.resources.files(package) / folder))


def asset_path(name: str) -> Path:
    """The file served as the asset `name` (ours first, as StaticFiles looks them up)."""
    for folder in (_OWN_ASSETS, _package_assets()):
        if (folder / name).is_file():
            return folder / name
    raise KeyError(name)


@functools.cache
def assets_digest() -> str:
    """A short digest of every asset's name and bytes: part of their URL, so it changes with them."""
    digest = hashlib.sha256()
    for folder in (_package_assets(), _OWN_ASSETS):
        for path in sorted(folder.iterdir()):
            if path.is_file():
                digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


class ImmutableAssets(StaticFiles):
    """Static files whose URL changes with their content, so a browser keeps them for a year."""

    def file_response(
        self,
        full_path: str | os.PathLike[str],
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["Cache-Control"] = IMMUTABLE
        return response


def script_hashes(page: str) -> str:
    """The CSP sources ('sha256-…') allowing exactly the inline scripts of `page`."""
    return " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()}'"
        for body in _INLINE_SCRIPT.findall(page)
    )


def _page(body: str, csp: str) -> HTMLResponse:
    # no-cache: a page names its assets by digest, so after an upgrade it must be fetched anew.
    return HTMLResponse(body, headers={"Content-Security-Policy": csp, "Cache-Control": "no-cache"})


def _with_script_hashes(response: HTMLResponse) -> HTMLResponse:
    page = bytes(response.body).decode()
    return _page(page, docs_csp(script_sources=script_hashes(page)))


def redoc_page(*, title: str, openapi_url: str, asset: dict[str, str], nonce: str) -> str:
    """ReDoc's page: no inline script or style; `redoc-init.js` starts ReDoc with the nonce."""
    e = functools.partial(html.escape, quote=True)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{e(title)}</title>
<link rel="icon" type="image/png" href="{e(asset[FAVICON])}">
</head>
<body>
<noscript>ReDoc needs JavaScript to show the API documentation.</noscript>
<div id="redoc"></div>
<script src="{e(asset[REDOC_JS])}"></script>
<script src="{e(asset[REDOC_INIT_JS])}" nonce="{e(nonce)}" data-spec-url="{e(openapi_url)}"></script>
</body>
</html>
"""


def install(app: FastAPI, *, docs_url: str = "/docs", redoc_url: str = "/redoc") -> None:
    """Serve the docs pages and their assets on `app`, which was built with `docs_url=None` and
    `redoc_url=None` (FastAPI's own pages load everything from a CDN)."""
    openapi_path = app.openapi_url
    if openapi_path is None:
        raise ValueError("the docs pages need the app's OpenAPI document")
    base = f"{ASSETS_PREFIX}/{assets_digest()}"
    app.mount(
        base,
        ImmutableAssets(directory=_OWN_ASSETS, packages=[_PACKAGE_ASSETS]),
        name="docs-assets",
    )
    oauth2_redirect = app.swagger_ui_oauth2_redirect_url
    parameters: dict[str, Any] = {**(app.swagger_ui_parameters or {}), "validatorUrl": None}

    def assets(request: Request) -> tuple[str, dict[str, str]]:
        root = str(request.scope.get("root_path", "")).rstrip("/")
        names = (SWAGGER_JS, SWAGGER_CSS, REDOC_JS, REDOC_INIT_JS, FAVICON)
        return root, {name: f"{root}{base}/{name}" for name in names}

    async def swagger_ui(request: Request) -> HTMLResponse:
        root, asset = assets(request)
        return _with_script_hashes(
            get_swagger_ui_html(
                openapi_url=root + openapi_path,
                title=f"{app.title} - Swagger UI",
                swagger_js_url=asset[SWAGGER_JS],
                swagger_css_url=asset[SWAGGER_CSS],
                swagger_favicon_url=asset[FAVICON],
                oauth2_redirect_url=root + oauth2_redirect if oauth2_redirect else None,
                init_oauth=app.swagger_ui_init_oauth,
                swagger_ui_parameters=parameters,
            )
        )

    async def swagger_ui_oauth2_redirect(request: Request) -> HTMLResponse:
        return _with_script_hashes(get_swagger_ui_oauth2_redirect_html())

    async def redoc(request: Request) -> HTMLResponse:
        root, asset = assets(request)
        nonce = secrets.token_urlsafe(18)
        page = redoc_page(
            title=f"{app.title} - ReDoc", openapi_url=root + openapi_path, asset=asset, nonce=nonce
        )
        return _page(page, docs_csp(style_sources=f"'nonce-{nonce}' {REDOC_LOAD_STYLES}"))

    app.add_route(docs_url, swagger_ui, include_in_schema=False)
    if oauth2_redirect:
        app.add_route(oauth2_redirect, swagger_ui_oauth2_redirect, include_in_schema=False)
    app.add_route(redoc_url, redoc, include_in_schema=False)
