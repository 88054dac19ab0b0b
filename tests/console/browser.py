"""Headless Chromium for the console's browser tests: start it, screenshot it, check a page with axe-core.

Debian's ``chromium`` and ``chromium-driver`` (/usr/bin/chromium, /usr/bin/chromedriver) and the pinned
axe-core (``ops/axe-core.version``, fetched and checked into ``.data/vendor/``) are installed by
``ops/bootstrap.sh`` when ``MWAP_NEED_BROWSER`` is set, as ``ops/test`` sets it. Selenium is given both
paths, so it never runs Selenium Manager, which would try to download a browser or a driver.

The fixtures built on this module are in ``tests/console/conftest.py``.
"""

import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, NoReturn

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.keys import Keys

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
AXE_PIN = ROOT / "ops" / "axe-core.version"
SCREENSHOTS = ROOT / ".data" / "screenshots"
# The page area (CSS pixels, scale 1), which screenshots show: headless Chromium still reserves
# room for a window frame and toolbar, so the window is made that much larger.
VIEWPORT = (1280, 900)
ALLOW_NO_BROWSER = "MWAP_ALLOW_NO_BROWSER"
WCAG_A_AA = ("wcag2a", "wcag2aa")

FLAGS = (
    "--headless",
    # Chromium's sandbox cannot start as root, which is who runs the tests here and in CI.
    "--no-sandbox",
    "--disable-gpu",
    # This machine's network is closed: without these, Chromium opens (and is refused) connections
    # to Google's services at every start, many at a time.
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # Containers often give /dev/shm 64 MB, too little for Chromium's renderers: use /tmp instead.
    "--disable-dev-shm-usage",
    # The same pixels on every machine, so screenshots compare.
    "--force-device-scale-factor=1",
    # Accept-Language and Chromium's own strings (form validation messages) alike on every machine.
    "--lang=en-US",
)


def _missing(what: str) -> NoReturn:
    message = (
        f"{what}: run the tests with ops/test, which installs Chromium, ChromeDriver and axe-core "
        "(ops/bootstrap.sh with MWAP_NEED_BROWSER=1)"
    )
    if os.environ.get(ALLOW_NO_BROWSER) == "1":
        pytest.skip(f"{message}; skipped because {ALLOW_NO_BROWSER}=1")
    pytest.fail(message, pytrace=False)


def require_browser() -> None:
    """Fail the test (skip it under ``MWAP_ALLOW_NO_BROWSER=1``) when Chromium or ChromeDriver is absent."""
    absent = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    if absent:
        _missing(f"{' and '.join(absent)} missing")


@contextmanager
def chrome(log_dir: Path | None = None) -> Iterator[webdriver.Chrome]:
    """A headless Chromium driven through ChromeDriver, with a new empty profile; quit on exit."""
    require_browser()
    profile = Path(tempfile.mkdtemp(prefix="mwap-chromium-"))
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    log = str(log_dir / "chromedriver.log") if log_dir is not None else os.devnull
    # At its default level ChromeDriver logs every command with its arguments, the keys typed into
    # a form among them (the console's sign-in takes the admin key): warnings and errors only.
    service = Service(executable_path=str(CHROMEDRIVER), log_output=log, service_args=["--log-level=WARNING"])
    driver = webdriver.Chrome(service=service, options=options)
    try:
        driver.implicitly_wait(0)  # waits are explicit (WebDriverWait), never hidden in every lookup
        driver.set_script_timeout(30)  # axe.run on a long page takes a few seconds
        driver.set_page_load_timeout(30)
        fit_viewport(driver)
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def fit_viewport(driver: webdriver.Chrome) -> None:
    """Size the window so that the page area is ``VIEWPORT``."""
    frame_width, frame_height = driver.execute_script(
        "return [window.outerWidth - window.innerWidth, window.outerHeight - window.innerHeight]"
    )
    driver.set_window_size(VIEWPORT[0] + frame_width, VIEWPORT[1] + frame_height)


def reset(driver: webdriver.Chrome) -> None:
    """Back to a blank page in one window with the standard viewport, no cookies and no site storage, so
    one Chromium serves many tests (a signed-in console session does not leak into the next test)."""
    for handle in driver.window_handles[1:]:
        driver.switch_to.window(handle)
        driver.close()
    driver.switch_to.window(driver.window_handles[0])
    driver.get("about:blank")
    # WebDriver's delete_all_cookies clears only the current page's domain; the DevTools call clears all.
    driver.execute_cdp_cmd("Network.clearBrowserCookies", {})
    driver.execute_cdp_cmd("Storage.clearDataForOrigin", {"origin": "*", "storageTypes": "all"})
    if driver.execute_script("return [window.innerWidth, window.innerHeight]") != list(VIEWPORT):
        fit_viewport(driver)


def screenshot(driver: webdriver.Chrome, name: str) -> Path:
    """Save what the viewport shows as ``.data/screenshots/<name>.png`` (name made file-safe); return the path."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip(".-")[:150] or "screenshot"
    path = SCREENSHOTS / f"{safe}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not driver.save_screenshot(str(path)):
        raise OSError(f"Chromium's screenshot could not be written to {path}")
    return path


def axe_version() -> str:
    """The pinned axe-core version (``ops/axe-core.version``, which ops/bootstrap.sh reads too)."""
    for line in AXE_PIN.read_text().splitlines():
        key, _, value = line.partition(" ")
        if key == "version":
            return value.strip()
    raise ValueError(f"{AXE_PIN} has no 'version' line")


def axe_script_path() -> Path:
    """Where ops/bootstrap.sh puts the pinned axe.min.js, once its tarball's integrity checked out."""
    return ROOT / ".data" / "vendor" / f"axe-core-{axe_version()}" / "axe.min.js"


@cache
def _axe_source() -> str:
    path = axe_script_path()
    if not path.is_file():
        _missing(f"axe-core {axe_version()} is not at {path}")
    return path.read_text()


# Runs in the page: only what the report needs crosses back (axe's full result is large).
_RUN_AXE = """
const [tags, done] = [arguments[0], arguments[arguments.length - 1]];
axe.run(document, {runOnly: {type: 'tag', values: tags}, resultTypes: ['violations']}).then(
  (results) => done(JSON.stringify(results.violations.map((v) => ({
    id: v.id,
    impact: v.impact,
    help: v.help,
    helpUrl: v.helpUrl,
    nodes: v.nodes.map((n) => ({target: n.target, html: n.html, summary: n.failureSummary})),
  })))),
  (error) => done(JSON.stringify({error: String(error)})),
);
"""


def axe_violations(driver: webdriver.Chrome, tags: Sequence[str] = WCAG_A_AA) -> list[dict[str, Any]]:
    """axe-core's violations of the rules tagged ``tags`` on the current page: each with ``id``,
    ``impact``, ``help``, ``helpUrl`` and ``nodes`` (``target`` selectors, ``html``, ``summary``).

    Rules axe cannot decide (its "incomplete", e.g. contrast over a background image) are not reported.
    """
    # Injected through WebDriver, so the page's Content-Security-Policy does not apply to it.
    if driver.execute_script("return typeof window.axe === 'undefined'"):
        driver.execute_script(_axe_source())
    answer: list[dict[str, Any]] | dict[str, str] = json.loads(
        driver.execute_async_script(_RUN_AXE, list(tags))
    )
    if isinstance(answer, dict):
        raise RuntimeError(f"axe.run failed on {driver.current_url}: {answer['error']}")
    return answer


def format_violations(violations: list[dict[str, Any]]) -> str:
    """One paragraph per rule broken, one line per offending element."""
    lines = []
    for violation in violations:
        lines.append(
            f"- {violation['id']} ({violation['impact']}): {violation['help']}  {violation['helpUrl']}"
        )
        for node in violation["nodes"]:
            summary = " ".join((node["summary"] or "").split())
            lines.append(f"    {' '.join(map(str, node['target']))}: {node['html']}")
            if summary:
                lines.append(f"      {summary}")
    return "\n".join(lines)


def assert_accessible(driver: webdriver.Chrome, page_name: str, tags: Sequence[str] = WCAG_A_AA) -> None:
    """Fail, listing every violation and saving a screenshot, unless axe finds none on the current page."""
    __tracebackhide__ = True  # the failure points at the test's line, not at this helper
    violations = axe_violations(driver, tags)
    if violations:
        shot = screenshot(driver, f"a11y-{page_name}")
        pytest.fail(
            f"{page_name} ({driver.current_url}): {len(violations)} accessibility rule(s) broken "
            f"(axe-core {axe_version()}, {', '.join(tags)}); screenshot {shot}\n"
            + format_violations(violations)
        )


@dataclass(frozen=True, slots=True)
class Focus:
    """The element that has the keyboard focus: its tag, id, ARIA role and accessible name."""

    tag: str
    id: str
    role: str
    name: str

    def __str__(self) -> str:
        ident = f"#{self.id}" if self.id else ""
        kind = self.tag if self.role in {"", "none", "generic"} else self.role
        return f"{kind}{ident} {self.name!r}"


def focused(driver: webdriver.Chrome) -> Focus:
    """What has the keyboard focus now (``body`` when nothing does)."""
    element = driver.switch_to.active_element
    return Focus(
        tag=element.tag_name,
        id=element.get_attribute("id") or "",
        role=element.aria_role,
        name=element.accessible_name,
    )


def tab_order(driver: webdriver.Chrome, presses: int, *, backwards: bool = False) -> list[Focus]:
    """Press TAB (Shift+TAB when ``backwards``) ``presses`` times; the element focused after each press.

    On a freshly loaded page the first TAB goes to the first focusable element. Past the last one the
    focus leaves the document (an entry with tag ``body``) and then starts again at the top.
    """
    stops = []
    for _ in range(presses):
        keys = ActionChains(driver)
        if backwards:
            keys.key_down(Keys.SHIFT).send_keys(Keys.TAB).key_up(Keys.SHIFT)
        else:
            keys.send_keys(Keys.TAB)
        keys.perform()
        stops.append(focused(driver))
    return stops
