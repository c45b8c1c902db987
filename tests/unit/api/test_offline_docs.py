"""The API docs pages (/docs, /redoc) load everything from Comet itself: no URL of another host in
their HTML, every asset served with its content type and a year's cache, and a Content-Security-
Policy that names no other host and no 'unsafe-inline' (decision 0031).

The real app in-process without its lifespan, and no credential on any request: the docs are open.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from api import docs_pages
from api.app import create_app
from config.settings import ApiSettings

PAGES = ("/docs", "/redoc")
_REFERENCE = re.compile(
    r"""(?:\bsrc|\bhref)\s*=\s*["']?([^"'\s>]+)|url\(\s*["']?([^"')\s]+)""", re.IGNORECASE
)
_INLINE_SCRIPT = re.compile(r"<script(?![^>]*\ssrc=)[^>]*>(.*?)</script>", re.DOTALL)
CONTENT_TYPES = {
    ".js": ("text/javascript", "application/javascript"),
    ".css": ("text/css",),
    ".png": ("image/png",),
}
# Sources a docs page's policy may name: Comet itself, inline code by hash or nonce, and the
# `data:` icons and `blob:` worker the libraries make in the page; never a host.
_ALLOWED_SOURCE = re.compile(
    r"^(?:'self'|'none'|data:|blob:|'sha256-[A-Za-z0-9+/]+=*'|'nonce-[A-Za-z0-9+/_-]+=*')$"
)
# The ReDoc bundle REDOC_LOAD_STYLES' hash was taken from (fastapi-offline 1.7.7).
REDOC_BUNDLE_SHA256 = "1320f442151c57c447d3b70c7ffc6c4f86d08464020fe34c8cc5d3164e9944f0"


@pytest.fixture(scope="module")
def app() -> FastAPI:
    return create_app(
        ApiSettings(
            jwt_secret="j" * 64,
            secret_key="k" * 64,
            database_url="postgresql+asyncpg://nobody:nothing@127.0.0.1:1/none",
            kafka_bootstrap_servers="127.0.0.1:1",
        )
    )


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://comet.test") as client:
        yield client


def references(page: str) -> list[str]:
    return [src or url for src, url in _REFERENCE.findall(page)]


def csp_sources(csp: str) -> dict[str, list[str]]:
    directives = (part.split() for part in csp.split(";") if part.strip())
    return {name: sources for name, *sources in directives}


@pytest.mark.parametrize("path", PAGES)
async def test_a_docs_page_references_only_urls_of_its_own_origin(
    client: httpx.AsyncClient, path: str
) -> None:
    response = await client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    urls = references(response.text)
    assert len(urls) >= 3, urls  # a script, a stylesheet or start-up script, and the favicon
    for url in urls:
        assert url.startswith("/"), url
        assert not url.startswith("//"), url
    assert not re.search(r"https?://", response.text)


@pytest.mark.parametrize("path", PAGES)
async def test_every_asset_of_a_docs_page_answers_with_its_content_type_and_a_years_cache(
    client: httpx.AsyncClient, path: str
) -> None:
    page = (await client.get(path)).text
    for url in references(page):
        response = await client.get(url)
        assert response.status_code == 200, url
        assert response.content, url
        expected = CONTENT_TYPES[Path(url).suffix]
        assert response.headers["content-type"].split(";")[0] in expected, url
        cache = response.headers["cache-control"]
        assert "immutable" in cache
        max_age = re.search(r"max-age=(\d+)", cache)
        assert max_age is not None
        assert int(max_age.group(1)) >= 365 * 24 * 3600


async def test_the_stylesheets_of_the_docs_load_nothing_from_another_host(client: httpx.AsyncClient) -> None:
    page = (await client.get("/docs")).text
    stylesheets = [url for url in references(page) if url.endswith(".css")]
    assert stylesheets
    for url in stylesheets:
        for reference in references((await client.get(url)).text):
            assert reference.startswith(("data:", "/")), reference
            assert not reference.startswith("//"), reference


@pytest.mark.parametrize("path", [*PAGES, "/docs/oauth2-redirect"])
async def test_a_docs_page_policy_names_no_other_host_and_no_unsafe_source(
    client: httpx.AsyncClient, path: str
) -> None:
    csp = (await client.get(path)).headers["content-security-policy"]
    directives = csp_sources(csp)
    assert directives["default-src"] == ["'self'"]
    assert directives["frame-ancestors"] == ["'none'"]
    for name, sources in directives.items():
        for source in sources:
            assert _ALLOWED_SOURCE.match(source), f"{name} {source}"


async def test_the_swagger_page_runs_only_the_inline_script_its_policy_names_by_hash(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/docs")
    scripts = _INLINE_SCRIPT.findall(response.text)
    assert len(scripts) == 1
    digest = base64.b64encode(hashlib.sha256(scripts[0].encode()).digest()).decode()
    assert csp_sources(response.headers["content-security-policy"])["script-src"] == [
        "'self'",
        f"'sha256-{digest}'",
    ]


async def test_the_redoc_page_has_no_inline_code_and_hands_a_fresh_nonce_to_its_start_up_script(
    client: httpx.AsyncClient,
) -> None:
    nonces = []
    for _ in range(2):
        response = await client.get("/redoc")
        assert not _INLINE_SCRIPT.findall(response.text)
        assert "<style" not in response.text
        directives = csp_sources(response.headers["content-security-policy"])
        assert directives["script-src"] == ["'self'"]
        nonce = re.search(r'<script src="[^"]+/redoc-init\.js" nonce="([^"]+)"', response.text)
        assert nonce is not None
        assert f"'nonce-{nonce.group(1)}'" in directives["style-src"]
        nonces.append(nonce.group(1))
    assert nonces[0] != nonces[1]


async def test_the_docs_assets_are_not_in_the_openapi_document_which_stays_where_it_was(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    assert paths
    assert not [path for path in paths if path.startswith(("/docs", "/redoc"))]


async def test_an_asset_under_another_digest_is_not_found(client: httpx.AsyncClient) -> None:
    response = await client.get(f"{docs_pages.ASSETS_PREFIX}/0000000000000000/{docs_pages.SWAGGER_JS}")
    assert response.status_code == 404


def test_the_redoc_bundle_is_the_one_its_load_time_style_hashes_were_taken_from() -> None:
    bundle = docs_pages.asset_path(docs_pages.REDOC_JS)
    assert hashlib.sha256(bundle.read_bytes()).hexdigest() == REDOC_BUNDLE_SHA256, (
        "fastapi-offline's ReDoc bundle changed: open /redoc in a browser and update REDOC_LOAD_STYLES "
        "with the hash its console names for the stylesheet it refused, then this digest"
    )
