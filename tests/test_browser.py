"""The chat page in a real browser: headless Chromium, driven by Selenium.

Debian's `chromium` and `chromium-driver` are used as installed; nothing is
downloaded. The server is `trio-boca run` in a subprocess on a fixed port,
so it can be stopped and started again under the pages.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import trio

from .conftest import TIMEOUT
from .services import free_port, require

BROWSER_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextmanager
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = require("chromium")
    for flag in BROWSER_FLAGS:
        options.add_argument(flag)
    with tempfile.TemporaryDirectory() as profile:
        options.add_argument(f"--user-data-dir={profile}")
        driver = webdriver.Chrome(options=options, service=Service(require("chromedriver")))
        try:
            yield driver
        finally:
            driver.quit()


def wait_for_text(driver: Any, element_id: str, text: str, timeout: float = TIMEOUT) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout).until(
        expected_conditions.text_to_be_present_in_element((By.ID, element_id), text)
    )


def say(driver: Any, text: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver.find_element(By.ID, "text").send_keys(text + Keys.ENTER)


async def start_chat(port: int, app: str = "examples.chat.app:app") -> trio.Process:
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "trio_boca", "run", app, "--port", str(port)],
        stdout=subprocess.PIPE,
    )
    assert process.stdout is not None
    await process.stdout.receive_some(4096)  # "trio-boca: serving ..."
    return process


async def stop_chat(process: trio.Process) -> None:
    process.send_signal(signal.SIGTERM)
    assert await process.wait() == 0


@pytest.fixture
def chromium() -> None:
    """Checked in a plain fixture, so a skip keeps its one-line reason."""
    require("chromium")
    require("chromedriver")


@pytest.mark.usefixtures("chromium")
async def test_two_windows_talk_and_reconnect_after_the_server_restarts() -> None:
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    page = f"{origin}/?room=lobby&name="
    run = trio.to_thread.run_sync
    with trio.fail_after(TIMEOUT * 6):
        server = await start_chat(port)
        try:
            with browser() as alice, browser() as bob:
                await run(alice.get, page + "alice")
                await run(bob.get, page + "bob")
                for driver in (alice, bob):
                    await run(wait_for_text, driver, "state", "connected to lobby")
                await run(wait_for_text, alice, "log", "bob joined")

                await run(say, alice, "hello from alice")
                await run(wait_for_message, bob, "alice", "hello from alice")

                # The server goes away: the pages say why, in words (they got
                # 1001), and write the outage into the room's log...
                await stop_chat(server)
                lost = "connection lost: the server is restarting"
                for driver in (alice, bob):
                    await run(wait_for_text, driver, "state", "the server is restarting")
                    await run(wait_for_text, driver, "log", lost)
                # ... and come back by themselves when it returns, and log that too.
                server = await start_chat(port)
                for driver in (alice, bob):
                    await run(wait_for_text, driver, "state", "connected to lobby")
                    await run(wait_for_text, driver, "log", "reconnected after")
                await run(say, bob, "back again")
                await run(wait_for_message, alice, "bob", "back again")
                await run(alice.save_screenshot, str(tempfile.gettempdir()) + "/chat.png")

                # Every asset loaded (the page's script, style and icon, from the
                # static files mounted under the App), and /favicon.ico answers too.
                for driver in (alice, bob):
                    assert await run(load_failures, driver) == []
                async with httpx.AsyncClient() as http:
                    icon = await http.get(f"{origin}/favicon.ico")
                assert (icon.status_code, icon.headers["content-type"]) == (200, "image/svg+xml")
        finally:
            if server.returncode is None:
                await stop_chat(server)


def wait_for_message(driver: Any, sender: str, text: str, timeout: float = TIMEOUT) -> None:
    """Wait until the log shows a chat message `text` from `sender`."""
    from selenium.webdriver.support.ui import WebDriverWait

    messages = """return Array.from(document.querySelectorAll("#log .message"),
                                   (m) => [m.dataset.from, m.querySelector(".body").textContent])"""
    WebDriverWait(driver, timeout).until(lambda d: [sender, text] in d.execute_script(messages))


def load_failures(driver: Any) -> list[str]:
    """What the browser's console said about resources it failed to load (a 404, say)."""
    return [e["message"] for e in driver.get_log("browser") if "Failed to load" in e["message"]]


@pytest.mark.usefixtures("chromium")
async def test_a_page_from_another_origin_cannot_open_a_websocket() -> None:
    """Cross-site WebSocket hijacking, tried for real: a page served from
    127.0.0.1:A opens a WebSocket to the app on 127.0.0.1:B, and the browser
    sends its Origin. Refused; the same page from the app's own origin talks."""
    elsewhere, app = free_port(), free_port()
    target = f"ws://127.0.0.1:{app}/echo"
    run = trio.to_thread.run_sync
    with trio.fail_after(TIMEOUT * 4):
        servers = [await start_chat(port, "tests.cli_apps:pages") for port in (elsewhere, app)]
        try:
            with browser() as driver:
                await run(driver.get, f"http://127.0.0.1:{elsewhere}/?ws={target}")
                await run(wait_for_text, driver, "status", "refused")
                await run(driver.get, f"http://127.0.0.1:{app}/?ws={target}")
                await run(wait_for_text, driver, "status", "echo: hello")
        finally:
            for server in servers:
                await stop_chat(server)
