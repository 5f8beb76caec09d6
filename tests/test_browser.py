"""The built book works in a real browser with no network: math typeset, images loaded, no errors.

A local http.server serves _build/html; headless Chromium (Debian's chromium + chromium-driver)
opens every page with every other host unreachable, and Chrome's own network log proves that no
request left 127.0.0.1. Screenshots of two chapters go to test-artifacts/ for a human to look at.
"""
from __future__ import annotations

import functools
import json
import os
import shutil
import tempfile
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from book_helpers import ROOT, built_book, solution_markers

pytestmark = [pytest.mark.slow, pytest.mark.book]

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = ROOT / "test-artifacts"
SCREENSHOT_PAGES = ("book/01_concepts", "book/02_loss")
LOCAL_SCHEMES = ("data:", "blob:", "about:", "chrome:", "chrome-untrusted:")  # never the network

# Typeset state of one page, computed once it has loaded and MathJax (if any) has finished.
PAGE_STATE_JS = """
const done = arguments[arguments.length - 1];
const loaded = document.readyState === 'complete' ? Promise.resolve()
  : new Promise(resolve => window.addEventListener('load', resolve));
loaded.then(() => window.MathJax && MathJax.startup && MathJax.startup.promise).then(() => {
  const maths = [...document.querySelectorAll('.math')];
  const prose = document.querySelector('main') || document.body;
  const clone = prose.cloneNode(true);
  clone.querySelectorAll('pre, code, script, style, mjx-container').forEach(e => e.remove());
  done({
    mathjax: Boolean(window.MathJax && MathJax.startup),
    untypeset: maths.filter(e => !e.querySelector('mjx-container')).map(e => e.textContent.trim()),
    containers: document.querySelectorAll('mjx-container').length,
    mathErrors: [...document.querySelectorAll('mjx-merror')].map(e => e.textContent),
    proseText: clone.textContent,
    visibleText: document.body.innerText,
    images: [...document.images].map(i => ({src: i.src, ok: i.complete && i.naturalWidth > 0})),
  });
}).catch(err => done({scriptError: String(err)}));
"""


class QuietHandler(SimpleHTTPRequestHandler):
    """Serves files without printing one log line per request into the test output."""

    def log_message(self, format, *args):
        pass


@pytest.fixture(scope="module")
def site():
    """Base URL of the built book, served from 127.0.0.1 on a free port for this module."""
    build = built_book()
    assert build.returncode == 0, "the book did not build; see test_book_build.py"
    handler = functools.partial(QuietHandler, directory=str(build.html))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def chromium_options(profile: str):
    """Headless Chromium that can reach 127.0.0.1 and nothing else, and logs console and network."""
    options = Options()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-dev-shm-usage", "--window-size=1280,1600",
                 f"--user-data-dir={profile}",
                 "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                 "--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=127.0.0.1"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    return options


@pytest.fixture(scope="module")
def browser():
    """A Selenium-driven Chromium; skipped only where none is installed and CI is not set."""
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        reason = f"{CHROMIUM} or {CHROMEDRIVER} missing: run `make browser`"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    driver = webdriver.Chrome(options=chromium_options(profile),
                              service=Service(executable_path=str(CHROMEDRIVER)))
    driver.set_script_timeout(60)
    driver.set_page_load_timeout(60)
    driver.get("about:blank")
    for log in ("browser", "performance"):
        driver.get_log(log)  # drop what start-up logged (the new-tab page's chrome:// requests)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def requested_urls(driver) -> list[str]:
    """Every URL the browser asked for since the last call (Chrome's performance log, drained)."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
        elif message["method"] == "Network.webSocketCreated":
            urls.append(message["params"]["url"])
    return urls


def built_pages(html: Path) -> list[str]:
    """Every HTML page of the book, relative to its root (theme templates under _static aside)."""
    return sorted(p.relative_to(html).as_posix() for p in html.rglob("*.html")
                  if p.relative_to(html).parts[0] not in {"_static", "_sources"})


def open_page(driver, url: str) -> dict:
    """Load url, follow a redirect stub (index.html) to its target, return the typeset state."""
    driver.get(url)
    if driver.find_elements(By.CSS_SELECTOR, "meta[http-equiv='refresh' i]"):
        WebDriverWait(driver, 30, ignored_exceptions=(WebDriverException,)).until(
            lambda d: d.execute_script("return document.URL != arguments[0]", url))
    return driver.execute_async_script(PAGE_STATE_JS)


def test_every_page_renders_offline(browser, site):
    """Math typeset, images loaded, no console errors, no request beyond 127.0.0.1, no solutions."""
    problems = []
    for page in built_pages(built_book().html):
        state = open_page(browser, site + page)
        problems += [f"{page}: {p}" for p in page_problems(browser, site, state)]
    assert not problems, "\n".join(problems)


def page_problems(driver, site: str, state: dict) -> list[str]:
    """What is wrong with the page the driver shows, given its typeset state."""
    if "scriptError" in state:
        return [f"MathJax failed: {state['scriptError']}"]
    problems = [f"math not typeset: {text!r}" for text in state["untypeset"]]
    problems += [f"TeX error: {text!r}" for text in state["mathErrors"]]
    problems += [f"raw math delimiter {d!r} in the text" for d in ("$$", "\\(", "\\[")
                 if d in state["proseText"]]
    problems += [f"image not loaded: {img['src']}" for img in state["images"] if not img["ok"]]
    problems += [f"console: {log['message']}" for log in driver.get_log("browser")
                 if log["level"] == "SEVERE"]
    problems += [f"request left localhost: {url}" for url in requested_urls(driver)
                 if not url.startswith(site) and not url.startswith(LOCAL_SCHEMES)]
    problems += [f"solution marker {m!r}" for m in solution_markers(state["visibleText"])]
    return problems


def test_pages_with_math_load_mathjax_and_typeset_it(browser, site):
    """The landing page has display and inline math; both must become MathJax output."""
    state = open_page(browser, site + "intro.html")
    assert state["mathjax"], "MathJax did not start"
    assert state["containers"] >= 2 and not state["untypeset"], state


@pytest.mark.parametrize("page", SCREENSHOT_PAGES)
def test_chapter_screenshot_is_saved(browser, site, page):
    """Full-height screenshots of two chapters, kept in test-artifacts/ for a human to look at."""
    open_page(browser, site + page + ".html")
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1280, min(max(height, 800), 8000))
    ARTIFACTS.mkdir(exist_ok=True)
    target = ARTIFACTS / (page.replace("/", "_") + ".png")
    assert browser.save_screenshot(str(target)) and target.stat().st_size > 0
