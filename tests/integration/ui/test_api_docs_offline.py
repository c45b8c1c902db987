"""The API docs pages, /docs (Swagger UI) and /redoc (ReDoc), in headless Chromium on a real
`comet api`: each renders the API's operations, fetches nothing from another origin, and its
Content-Security-Policy blocks nothing the page needs (decision 0031).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import pytest
from selenium.webdriver import Chrome
from selenium.webdriver.common.by import By

from tests.integration.ui.conftest import LiveComet, Screens, console_errors, wait

pytestmark = pytest.mark.integration

# ReDoc shows "API docs by Redocly" with a logo from its CDN: the policy refuses it (ReDoc then
# hides the image), the one refusal expected in the console.
REDOCLY_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"


@pytest.mark.parametrize(
    ("path", "operation"),
    [("/docs", ".opblock"), ("/redoc", "li[data-item-id]")],
)
async def test_an_api_docs_page_renders_in_a_browser_from_comet_alone(
    browser: Chrome, live_comet: LiveComet, screens: Screens, path: str, operation: str
) -> None:
    browser.get(f"{live_comet.base_url}{path}")
    wait(browser).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, operation)) > 20)
    screens.take(browser, path.strip("/"))

    execute = cast(Callable[[str], Any], browser.execute_script)
    fetched = cast(list[str], execute("return performance.getEntriesByType('resource').map(e => e.name)"))
    assert any(url.endswith(".js") for url in fetched), fetched
    assert execute("return document.querySelector('link[rel~=icon]').href").startswith(live_comet.base_url)
    console = console_errors(browser)
    errors = [message for message in console if REDOCLY_LOGO not in message]
    assert errors == [], errors
    # Chromium lists a load its policy refused among the page's resources too: the logo may be
    # there, refused.
    foreign = [url for url in fetched if not url.startswith(f"{live_comet.base_url}/")]
    assert foreign in ([], [REDOCLY_LOGO]), foreign
    if foreign:
        assert any(REDOCLY_LOGO in message and "Content Security Policy" in message for message in console)
