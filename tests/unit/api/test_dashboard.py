"""The dashboard's serving: its folder under /ui, its own strict policy, and nothing in its files
that loads from another host."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from api.dashboard import UI_DIR, mount_dashboard
from api.middleware import API_CSP, DOCS_CSP, UI_CSP, csp_for

# The one absolute URL the dashboard's code holds: SVG's XML namespace, a name and never fetched.
SVG_NAMESPACE = "http://www.w3.org/2000/svg"


@pytest.mark.parametrize(
    ("path", "policy"),
    [
        ("/ui", UI_CSP),
        ("/ui/", UI_CSP),
        ("/ui/js/pages/run.js", UI_CSP),
        ("/uix", API_CSP),
        ("/api/v1/ui", API_CSP),
        ("/docs", DOCS_CSP),
        ("/healthz", API_CSP),
    ],
)
def test_each_path_gets_the_policy_of_what_it_serves(path: str, policy: str) -> None:
    assert csp_for(path) == policy


def test_the_dashboard_policy_allows_only_its_own_scripts_styles_and_api_calls() -> None:
    directives = dict(d.strip().split(" ", 1) for d in UI_CSP.split(";"))
    assert directives["default-src"] == "'none'"
    assert directives["script-src"] == "'self'"
    assert directives["style-src"] == "'self'"
    assert directives["connect-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    assert "unsafe" not in UI_CSP
    assert "http" not in UI_CSP


def test_no_dashboard_file_loads_anything_from_another_host() -> None:
    files = [p for p in UI_DIR.rglob("*") if p.is_file()]
    assert {p.suffix for p in files} <= {".html", ".js", ".css"}
    offenders = [
        str(p.relative_to(UI_DIR))
        for p in files
        if any(s in p.read_text().replace(SVG_NAMESPACE, "") for s in ("http://", "https://", "//cdn"))
    ]
    assert offenders == []


def test_no_dashboard_page_runs_inline_script_or_style() -> None:
    for page in UI_DIR.glob("*.html"):
        text = page.read_text()
        assert "<script>" not in text
        assert "<style" not in text
        assert " style=" not in text
        assert " onclick=" not in text


async def test_the_dashboard_folder_is_served_under_ui_with_its_index(tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("<!doctype html><title>t</title>")
    (tmp_path / "app.js").write_text("export {};")
    app = FastAPI()
    mount_dashboard(app, tmp_path)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://comet.test") as client:
        moved = await client.get("/ui")
        index = await client.get("/ui/")
        script = await client.get("/ui/app.js")
        missing = await client.get("/ui/nope.js")
    assert moved.status_code == 307
    assert moved.headers["location"] == "http://comet.test/ui/"
    assert index.text == "<!doctype html><title>t</title>"
    assert "javascript" in script.headers["content-type"]
    assert missing.status_code == 404
