"""Browser tests of the Portal app's admin pages: the stand-in Portal server and headless Chromium.

A test module starts one server and one browser (module-scoped fixtures) and signs in as the
users serve.py creates:

    @pytest.fixture(scope="module")
    def portal_url(tmp_path_factory):
        with running_portal(tmp_path_factory.mktemp("portal"), {"ARCHIVE_CORE_CONFIG": ...}) as url:
            yield url

    @pytest.fixture(scope="module")
    def driver():
        with browser() as driver:
            yield driver

The server's log goes to the test process's stderr (so pytest shows it under a failing test's
captured output) and to `<tmp>/portal-server.log`.
"""

from __future__ import annotations

import http.client
import os
import queue
import shutil
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, NoReturn

import pytest

REPO = Path(__file__).resolve().parent.parent
APP_DIR = REPO / "portal_app" / "archive_core_portal"
SERVE = Path(__file__).resolve().parent / "portal_stub" / "serve.py"
SCREENSHOTS = REPO / "build" / "screenshots"

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
REQUIRE_BROWSER_ENV = "ARCHIVE_CORE_REQUIRE_BROWSER"
SETUP_HINT = "run scripts/setup-system to install chromium and chromium-driver"

#: The users serve.py creates: (username, password). `admin` holds the role
#: `portal_archive_settings` through its Group and is not a superuser; `viewer` holds no role.
ADMIN = ("admin", "admin-pass")
VIEWER = ("viewer", "viewer-pass")

LISTENING = "listening on "
_LOG_TAIL_LINES = 60
_UI_TIMEOUT = 10.0
# WebDriverWait polls every 0.5 s by default, which is most of a page load here.
_UI_POLL = 0.05


class PortalServerFailed(RuntimeError):
    """The stand-in Portal did not start, or died; the message ends with its log's tail."""


class PortalServer:
    """One stand-in Portal web server process (tests/portal_stub/serve.py) and its log."""

    def __init__(
        self,
        workdir: Path,
        env: Mapping[str, str] | None = None,
        *,
        apps: Sequence[Path] = (APP_DIR,),
        enabled_apps: Sequence[str] = ("archive-core",),
    ) -> None:
        self.workdir = workdir
        self.env = dict(env or {})
        self.apps = list(apps)
        self.enabled_apps = list(enabled_apps)
        self.log_path = workdir / "portal-server.log"
        self.url = ""
        self._process: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None
        self._lines: queue.Queue[str | None] = queue.Queue()

    def __enter__(self) -> PortalServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self, timeout: float = 60.0) -> str:
        """Copy the apps into a plugin folder, start the server, return its base URL."""
        plugins_dir = self.workdir / "plugins"
        for app in self.apps:
            shutil.copytree(
                app, plugins_dir / app.name, ignore=shutil.ignore_patterns("__pycache__")
            )
        command = [
            sys.executable,
            str(SERVE),
            "--plugins-dir",
            str(plugins_dir),
            "--db",
            str(self.workdir / "portal.sqlite3"),
            "--log",
            str(self.log_path),
            "--enabled-apps",
            ",".join(self.enabled_apps),
        ]
        for app in self.apps:
            command += ["--app", app.name]
        self._process = subprocess.Popen(
            command,
            cwd=REPO,
            env={**os.environ, **self.env},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            # Inherited: under pytest's capture the log lands in the running test's output.
            stderr=None,
            text=True,
        )
        assert self._process.stdout is not None
        # Drained for the process's whole life, so that a chatty server never blocks on a pipe.
        self._reader = threading.Thread(
            target=self._read_stdout, args=(self._process.stdout,), daemon=True
        )
        self._reader.start()
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            self.stop()
            raise PortalServerFailed(
                self.describe_failure(f"no {LISTENING!r} line in {timeout} s")
            ) from None
        if line is None:
            self.stop()
            raise PortalServerFailed(self.describe_failure("the server exited while starting"))
        self.url = line.removeprefix(LISTENING).strip()
        return self.url

    def _read_stdout(self, stdout: IO[str]) -> None:
        announced = False
        for line in stdout:
            if not announced and line.startswith(LISTENING):
                announced = True
                self._lines.put(line)
        self._lines.put(None)

    def check_alive(self) -> None:
        """Raise PortalServerFailed, with the log, if the server has exited."""
        if self._process is None or self._process.poll() is not None:
            raise PortalServerFailed(self.describe_failure("the server is not running"))

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        """The last `lines` lines of the server's log."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return "(no log written)"
        return "\n".join(text.splitlines()[-lines:])

    def describe_failure(self, message: str) -> str:
        """`message`, the server's exit status if it exited, and the tail of its log."""
        code = None if self._process is None else self._process.poll()
        status = "" if code is None else f" (exit status {code})"
        return f"stand-in Portal: {message}{status}; log {self.log_path}:\n{self.log_tail()}"

    def stop(self) -> None:
        """Terminate the server (it keeps no state worth a graceful stop) and reap it."""
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=10)
        # The process is gone, so the reader meets the end of its stdout and returns.
        if self._reader is not None:
            self._reader.join(timeout=10)
        if self._process.stdout is not None:
            self._process.stdout.close()


@contextmanager
def running_portal(
    tmp_path: Path,
    env: Mapping[str, str] | None = None,
    *,
    apps: Sequence[Path] = (APP_DIR,),
    enabled_apps: Sequence[str] = ("archive-core",),
    timeout: float = 60.0,
) -> Iterator[str]:
    """A stand-in Portal serving `apps` (app directories, copied) with `env` added to this
    process's environment; yields its base URL (`http://127.0.0.1:PORT`, no trailing slash).

    An exception from the body gets the server's log tail as a note; a server that died while
    in use is an error of its own when the body ends.
    """
    server = PortalServer(tmp_path, env, apps=apps, enabled_apps=enabled_apps)
    server.start(timeout)
    try:
        yield server.url
    except GeneratorExit:
        raise
    except BaseException as error:
        error.add_note(server.describe_failure("log of the server the failing code used"))
        raise
    else:
        server.check_alive()
    finally:
        server.stop()


def _browser_missing(reason: str) -> NoReturn:
    if os.environ.get(REQUIRE_BROWSER_ENV) == "1":
        pytest.fail(f"{reason}; {REQUIRE_BROWSER_ENV}=1 requires the browser tests to run")
    pytest.skip(reason)


@contextmanager
def browser() -> Iterator[Any]:
    """Headless Chromium under Selenium (a `selenium.webdriver.Chrome`), quit on exit.

    Skips the test when Chromium, chromedriver or Selenium is missing, or fails it when
    ARCHIVE_CORE_REQUIRE_BROWSER=1 (as `./run test` sets).
    """
    for path in (CHROMIUM, CHROMEDRIVER):
        if not path.exists():
            _browser_missing(f"{path} is missing ({SETUP_HINT})")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError as error:
        _browser_missing(f"selenium is not installed ({error}); run uv sync")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1280,1000",
    ):
        options.add_argument(argument)
    service = Service(str(CHROMEDRIVER), log_output=subprocess.DEVNULL)
    driver = webdriver.Chrome(options=options, service=service)
    try:
        yield driver
    finally:
        driver.quit()


def login(driver: Any, base_url: str, user: str, password: str) -> None:
    """Sign in through the login page's form, as a person would; replaces any earlier session.

    Raises AssertionError with the page's text when the login page does not let the user in.
    """
    from selenium.webdriver.common.by import By

    driver.get(f"{base_url}/login/")
    form = driver.find_element(By.ID, "login-form")
    form.find_element(By.ID, "id_username").send_keys(user)
    form.find_element(By.ID, "id_password").send_keys(password)
    follow(driver, form.find_element(By.ID, "login-submit"))
    if urllib.parse.urlsplit(driver.current_url).path == "/login/":
        page = driver.find_element(By.TAG_NAME, "body").text
        raise AssertionError(f"login as {user!r} was refused; the page says:\n{page}")


def logout(driver: Any) -> None:
    """Sign out through the logout form of the page the browser shows."""
    from selenium.webdriver.common.by import By

    form = driver.find_element(By.ID, "logout-form")
    form.submit()
    wait_until_replaced(driver, form)


def follow(driver: Any, element: Any) -> None:
    """Click a link or a form's button and wait for the page it leads to: a click can return
    before the next page is there, and an element looked for meanwhile is the old page's."""
    element.click()
    wait_until_replaced(driver, element)


def wait_until_replaced(driver: Any, element: Any, timeout: float = _UI_TIMEOUT) -> None:
    """Wait until the page holding `element` was replaced by the next one (after a click
    that submits a form or follows a link).

    Selenium's `staleness_of` expects a stale-element error; Chromium sometimes answers a
    node of the old page with "Node with given id does not belong to the document" instead,
    which means the same thing.
    """
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.support.ui import WebDriverWait

    def replaced(_driver: Any) -> bool:
        try:
            element.is_enabled()
        except WebDriverException:
            return True
        return False

    WebDriverWait(driver, timeout, poll_frequency=_UI_POLL).until(replaced)


def http_status(driver: Any, url: str) -> int:
    """The HTTP status a GET of `url` gets in the browser's session (redirects not followed).

    A browser does not expose status codes; this asks the server directly with the browser's
    cookies, so "viewer gets 403" is checked exactly rather than read from a page.
    """
    parts = urllib.parse.urlsplit(url)
    cookies = "; ".join(f"{cookie['name']}={cookie['value']}" for cookie in driver.get_cookies())
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=_UI_TIMEOUT)
    try:
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        connection.request("GET", target or "/", headers={"Cookie": cookies, "Accept": "text/html"})
        return connection.getresponse().status
    finally:
        connection.close()


def screenshot(driver: Any, name: str) -> Path:
    """Save what the browser shows as build/screenshots/<name>.png; returns the path."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    if not driver.save_screenshot(str(path)):
        raise RuntimeError(f"the browser could not save a screenshot to {path}")
    return path
