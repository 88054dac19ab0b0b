"""The browser tests' own support (tests/console/browser.py) against real pages served on loopback: axe-core
passes a good page and names what is wrong on a bad one, screenshots are PNGs of the window, TAB walks
the controls, and one test's cookies do not reach the next."""

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import browser as support
import pytest
from selenium import webdriver

# Strict, like the API's own (api_thin/security.py): axe-core must run where the page may not load scripts.
CSP = "default-src 'none'; style-src 'unsafe-inline'"

GOOD = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Sign in - good page</title></head>
<body>
<main>
  <h1>Sign in</h1>
  <form method="post">
    <label for="operator">Operator name</label> <input id="operator" name="operator" type="text">
    <label for="key">Admin key</label> <input id="key" name="key" type="password">
    <button id="submit" type="submit">Sign in</button>
  </form>
  <p style="color: #595959">Dark gray on white: a contrast of 7 to 1.</p>
</main>
</body>
</html>
"""

BAD = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Bad page</title></head>
<body>
<main>
  <h1>Search</h1>
  <input id="unlabelled" type="text">
  <p id="faint" style="color: #aaa">Light gray on white: a contrast of 2.3 to 1.</p>
</main>
</body>
</html>
"""

PAGES = {"/good": GOOD, "/bad": BAD}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    """The two pages over HTTP on a free loopback port; the base URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            page = PAGES.get(self.path)
            body = (page or "not found").encode()
            self.send_response(200 if page else 404)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Security-Policy", CSP)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_a_good_page_has_no_violations(browser: webdriver.Chrome, site: str) -> None:
    browser.get(f"{site}/good")
    assert browser.title == "Sign in - good page"
    assert support.axe_violations(browser) == []
    support.assert_accessible(browser, "good page")


def test_a_bad_page_reports_the_missing_label_and_the_faint_text(
    browser: webdriver.Chrome, site: str
) -> None:
    browser.get(f"{site}/bad")
    violations = {v["id"]: v for v in support.axe_violations(browser)}
    assert set(violations) == {"label", "color-contrast"}
    assert violations["label"]["impact"] == "critical"
    assert [node["target"] for node in violations["label"]["nodes"]] == [["#unlabelled"]]
    assert violations["color-contrast"]["impact"] == "serious"
    assert [node["target"] for node in violations["color-contrast"]["nodes"]] == [["#faint"]]
    assert "2.32" in violations["color-contrast"]["nodes"][0]["summary"]  # #aaa on #fff


def test_assert_accessible_lists_every_violation(browser: webdriver.Chrome, site: str) -> None:
    browser.get(f"{site}/bad")
    with pytest.raises(pytest.fail.Exception) as failure:
        support.assert_accessible(browser, "bad page")
    message = str(failure.value)
    assert f"bad page ({site}/bad): 2 accessibility rule(s) broken" in message
    assert "- label (critical): Form elements must have labels" in message
    assert '#unlabelled: <input id="unlabelled" type="text">' in message
    assert "- color-contrast (serious):" in message
    assert '#faint: <p id="faint"' in message
    assert (support.SCREENSHOTS / "a11y-bad-page.png").read_bytes().startswith(PNG_SIGNATURE)


def test_a_screenshot_is_a_png_of_the_whole_viewport(browser: webdriver.Chrome, site: str) -> None:
    browser.get(f"{site}/good")
    path = support.screenshot(browser, "self test/good page")
    assert path == support.SCREENSHOTS / "self-test-good-page.png"
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    # The IHDR chunk, first after the signature: width and height, big-endian.
    assert (int.from_bytes(data[16:20]), int.from_bytes(data[20:24])) == support.VIEWPORT
    assert browser.execute_script("return [window.innerWidth, window.innerHeight]") == list(support.VIEWPORT)


def test_tab_walks_the_controls_in_document_order(browser: webdriver.Chrome, site: str) -> None:
    browser.get(f"{site}/good")
    stops = support.tab_order(browser, 3)
    assert [(stop.id, stop.role, stop.name) for stop in stops] == [
        ("operator", "textbox", "Operator name"),
        ("key", "textbox", "Admin key"),
        ("submit", "button", "Sign in"),
    ]
    assert [stop.id for stop in support.tab_order(browser, 2, backwards=True)] == ["key", "operator"]


def test_nothing_a_test_leaves_in_the_browser_reaches_the_next(browser: webdriver.Chrome, site: str) -> None:
    browser.get(f"{site}/good")
    browser.add_cookie({"name": "mwap_console", "value": "signed-in", "path": "/"})
    browser.execute_script("localStorage.setItem('draft', 'x'); sessionStorage.setItem('tab', 'y')")
    browser.switch_to.new_window("tab")
    browser.set_window_size(800, 600)
    support.reset(browser)
    assert len(browser.window_handles) == 1
    assert browser.execute_script("return [window.innerWidth, window.innerHeight]") == list(support.VIEWPORT)
    browser.get(f"{site}/good")
    assert browser.get_cookies() == []
    assert browser.execute_script("return [localStorage.length, sessionStorage.length]") == [0, 0]


def test_a_missing_browser_fails_the_test_and_says_what_to_run(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(support, "CHROMIUM", tmp_path / "chromium")
    monkeypatch.delenv(support.ALLOW_NO_BROWSER, raising=False)
    with pytest.raises(pytest.fail.Exception, match="chromium missing: run the tests with ops/test"):
        support.require_browser()
    monkeypatch.setenv(support.ALLOW_NO_BROWSER, "1")
    with pytest.raises(pytest.skip.Exception, match="MWAP_ALLOW_NO_BROWSER=1"):
        support.require_browser()
