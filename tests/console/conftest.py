"""The console's browser tests: one headless Chromium for the session, reset before each test that asks
for ``browser``, and a screenshot of the page when such a test fails."""

from collections.abc import Generator, Iterator

import pytest
from browser import chrome, reset, screenshot
from selenium import webdriver
from selenium.common.exceptions import WebDriverException


@pytest.fixture(scope="session")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[webdriver.Chrome]:
    """The session's one Chromium (each start costs a second or two); tests take it as ``browser``."""
    with chrome(log_dir=tmp_path_factory.mktemp("chromium")) as driver:
        yield driver


@pytest.fixture
def browser(chromium: webdriver.Chrome) -> webdriver.Chrome:
    """Chromium on a blank page, 1280x900, with no cookies or site data left by an earlier test."""
    reset(chromium)
    return chromium


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failed browser test's report names a screenshot of the page as the test left it."""
    report = yield
    driver = getattr(item, "funcargs", {}).get("browser")
    if report.when == "call" and report.failed and driver is not None:
        try:
            shot = f"{driver.current_url} saved as {screenshot(driver, f'failed-{item.nodeid}')}"
        except (WebDriverException, OSError) as error:
            shot = f"none could be taken: {error}"
        report.sections.append(("screenshot of the page", shot))
    return report
