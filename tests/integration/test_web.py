"""The room in a browser (issue 15): Debian's headless Chromium driven by Selenium.

A real ``cspd --tcp`` on a private session bus, a real sidecar with the stand-in
CLI, and the page as a user gets it from ``cspctl web``: the one-time code logs in
once and leaves an HttpOnly cookie (never the token); a ``cspctl send`` message
shows up live; a message sent from the page is in ``cspctl history``; pause and
resume from the page change the agent's state on D-Bus; a reload shows every
message with no gap; a hostile message stays text and runs nothing; requests with
a foreign Host or Origin are refused.  Screenshots at desktop and phone width go
to ``$CSP_TEST_ARTIFACTS`` (default ``tests/artifacts/``).
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.conftest import REPO, CspEnv, GatewayProcess, require
from tests.dbus_bus import PrivateBus
from tests.httpedge import TcpGatewayProcess, free_port
from tests.integration.test_sidecar import agent_state, fake_cli, history, sidecar_cmd
from tests.polling import wait_for
from tests.tmuxtest import TmuxServer

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
DEST = "io.csp.Agent.fa_1"
HOSTILE = ('<script>window.__pwned = 1</script> <img src=x onerror="window.__pwned = 2"> '
           '[click me](javascript:window.__pwned=3) <a href="javascript:alert(1)">a</a> '
           '**still bold**')


def artifacts_dir() -> Path:
    path = Path(os.environ.get("CSP_TEST_ARTIFACTS") or REPO / "tests" / "artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def web_gateway(csp_env: CspEnv, bus: PrivateBus, tmp_path: Path) -> Iterator[TcpGatewayProcess]:
    csp_env.env["DBUS_SESSION_BUS_ADDRESS"] = bus.address
    csp_env.env["FAKECLI_LOG"] = str(tmp_path / "fake_cli.log")
    csp_env.env["FAKECLI_THINK"] = "0.2"
    gw = TcpGatewayProcess(csp_env)
    try:
        gw.start()
        yield gw
    finally:
        gw.stop()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    require(Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists(),
            "Debian's chromium and chromium-driver are needed (apt-get install them)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        require(False, "selenium is needed (pip install selenium)")
        raise
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--window-size=1280,800",
                f"--user-data-dir={tmp_path / 'chromium'}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


# -- helpers ---------------------------------------------------------------------------

def stored_ids(env: CspEnv) -> list[int]:
    return [m["id"] for m in history(env) if m["room"] == "main"]


def shown(driver: Any) -> list[dict[str, Any]]:
    """The messages on the page: id, sender and the text of the body."""
    result: list[dict[str, Any]] = driver.execute_script(
        "return [...document.querySelectorAll('#messages li.msg')].map(li => ({"
        "id: Number(li.dataset.id), from: li.querySelector('.from').textContent,"
        "body: li.querySelector('.body').textContent}))")
    return result


def page_state(driver: Any, name: str) -> str:
    text: str = driver.execute_script(
        "const li = document.querySelector(`#agent-list li[data-name='${arguments[0]}']`);"
        "return li ? li.querySelector('.agent-state').textContent : ''", name)
    return text


def bus_state(bus: PrivateBus) -> str:
    r = bus.busctl("get-property", DEST, "/io/csp/Agent", "io.csp.Agent1", "State")
    return r.stdout.strip()


def raw(port: int, method: str, path: str, headers: dict[str, str],
        body: Any = None) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        data = json.dumps(body).encode() if body is not None else None
        if data is not None:
            headers = {**headers, "Content-Type": "application/json"}
        conn.request(method, path, body=data, headers=headers)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def login_url(env: CspEnv) -> str:
    r = env.cspctl("web", "--json", "--no-open")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["opened"] is False and out["expires_in"] <= 300
    url: str = out["login_url"]
    assert "/web/login?code=" in url
    return url


# -- the test ----------------------------------------------------------------------------

def test_the_room_in_a_browser(csp_env: CspEnv, bus: PrivateBus,
                               web_gateway: TcpGatewayProcess, tmux: TmuxServer,
                               browser: Any) -> None:
    port = web_gateway.port
    origin = f"http://127.0.0.1:{port}"
    token = web_gateway.token
    tmux.new_pane(sidecar_cmd("fa-1", *fake_cli(), profile="claude")).wait_text(
        "fake agent ready")
    wait_for(lambda: bus_state(bus) == 's "ready"', what="fa-1 ready on the bus")

    # log in with the one-time code: an HttpOnly, SameSite=Strict cookie, no token anywhere
    url = login_url(csp_env)
    browser.get(url)
    wait_for(lambda: browser.current_url == f"{origin}/web/", what="the page after login")
    cookie = browser.get_cookie("csp_session")
    assert cookie is not None and cookie["httpOnly"] is True and cookie["sameSite"] == "Strict"
    assert browser.execute_script("return document.cookie") == ""
    assert browser.execute_script("return localStorage.length + sessionStorage.length") == 0
    assert token not in browser.page_source and token not in cookie["value"]
    wait_for(lambda: browser.find_element("id", "conn").text == "live", what="the live stream")

    # the code is spent: a second use lands on the page without a session
    status, headers, _ = raw(port, "GET", urlsplit(url).path + "?" + urlsplit(url).query,
                             {"Host": f"127.0.0.1:{port}"})
    assert status == 303 and headers["location"] == "/web/#expired"
    assert "set-cookie" not in headers

    # a message sent by `cspctl send` shows up live
    assert csp_env.cspctl("send", "@all", "hello from the cli").returncode == 0
    wait_for(lambda: any(m["body"] == "hello from the cli" for m in shown(browser)),
             what="the cli's message on the page")

    # a message from the page is stored, as the human's, to the agent it names
    box = browser.find_element("id", "text")
    box.send_keys("@fa")
    wait_for(lambda: browser.find_element("id", "complete").is_displayed(),
             what="@ completion")
    box.send_keys("\t")  # completes to "@fa-1 "
    box.send_keys("hello from the page\n")
    sent = wait_for(lambda: [m for m in history(csp_env) if m["content"] == "hello from the page"],
                    what="the page's message in cspctl history")
    assert sent[0]["from"] == "human" and sent[0]["to"] == ["fa-1"]
    # the agent typed it in and its reply (the exact-reply path) shows on the page
    wait_for(lambda: any(m["from"] == "fa-1" and "hello from the page" in m["body"]
                         for m in shown(browser)), what="fa-1's reply on the page")

    # pause and resume from the page: the sidecar's state on D-Bus follows
    def click_control(action: str) -> None:
        from selenium.common.exceptions import StaleElementReferenceException

        def click() -> bool:
            # the list is drawn again on each state report: find the button anew
            try:
                button = browser.find_element(
                    "css selector", "#agent-list li[data-name='fa-1'] button.control")
                if button.text != action:
                    return False
                button.click()
                return True
            except StaleElementReferenceException:
                return False

        wait_for(click, what=f"fa-1's {action} button clicked")

    wait_for(lambda: page_state(browser, "fa-1") == "ready", what="fa-1 ready on the page")
    click_control("pause")
    wait_for(lambda: bus_state(bus) == 's "paused"', what="fa-1 paused on D-Bus")
    wait_for(lambda: page_state(browser, "fa-1") == "paused", what="paused on the page")
    click_control("resume")
    wait_for(lambda: bus_state(bus) == 's "ready"', what="fa-1 ready again on D-Bus")

    # a hostile message is text: no element from it, nothing ran, no javascript: link
    assert csp_env.cspctl("send", "@all", HOSTILE).returncode == 0
    hostile = wait_for(lambda: [m for m in shown(browser) if "__pwned" in m["body"]],
                       what="the hostile message on the page")
    assert "<script>window.__pwned = 1</script>" in hostile[0]["body"]
    assert '<img src=x onerror="window.__pwned = 2">' in hostile[0]["body"]
    found = browser.execute_script(
        "const b = document.querySelectorAll('#messages .body');"
        "return {script: document.querySelectorAll('#messages script').length,"
        " img: document.querySelectorAll('#messages img').length,"
        " js: [...document.querySelectorAll('#messages a')].filter("
        "   a => !/^(https?|mailto):/.test(a.protocol)).length,"
        " bold: [...b].some(x => [...x.querySelectorAll('strong')]"
        "   .some(s => s.textContent === 'still bold')),"
        " pwned: window.__pwned === undefined ? null : window.__pwned}")
    assert found == {"script": 0, "img": 0, "js": 0, "bold": True, "pwned": None}

    # markdown of a reply: a code block, a table, a list, a quote, a checked link
    markdown = ("# Plan\n\n```python\nprint('<b>hi</b>')\n```\n\n| step | who |\n|---|---|\n"
                "| build | fa-1 |\n\n- one\n- two\n\n> quoted\n\nsee https://example.com/x.")
    assert csp_env.cspctl("send", "@all", markdown).returncode == 0
    rendered = wait_for(lambda: browser.execute_script(
        "const li = [...document.querySelectorAll('#messages li.msg')].pop();"
        "const b = li.querySelector('.body');"
        "return b.querySelector('table') && {code: b.querySelector('pre code').textContent,"
        " cells: [...b.querySelectorAll('td')].map(td => td.textContent),"
        " items: b.querySelectorAll('li').length, quote: b.querySelector('blockquote') !== null,"
        " link: b.querySelector('a').href}"), what="the markdown message rendered")
    assert rendered == {"code": "print('<b>hi</b>')", "cells": ["build", "fa-1"], "items": 2,
                        "quote": True, "link": "https://example.com/x"}

    # screenshots at desktop and phone width
    out = artifacts_dir()
    browser.set_window_size(1280, 800)
    assert browser.save_screenshot(str(out / "web-desktop.png"))
    browser.set_window_size(390, 844)
    wait_for(lambda: browser.find_element("id", "agents-toggle").is_displayed(),
             what="the phone layout")
    assert browser.save_screenshot(str(out / "web-phone.png"))
    browser.find_element("id", "agents-toggle").click()
    assert browser.find_element("id", "agents").is_displayed()
    assert browser.save_screenshot(str(out / "web-phone-agents.png"))
    browser.set_window_size(1280, 800)

    # reload: every message of the room is there, in order, none twice
    for i in range(5):
        assert csp_env.cspctl("send", "@all", f"burst {i}").returncode == 0
    browser.refresh()
    wait_for(lambda: browser.find_element("id", "conn").text == "live", what="live again")
    assert csp_env.cspctl("send", "@all", "after the reload").returncode == 0
    # the agent may still be replying: compare with what is stored at each look
    wait_for(lambda: [m["id"] for m in shown(browser)] == stored_ids(csp_env),
             what="every stored message on the page after the reload")

    # the stream cut under the page (its TCP connections destroyed): it reconnects from its
    # cursor, and what was posted meanwhile shows once, in order
    opened = int(browser.find_element("id", "conn").get_attribute("data-opened"))
    require(shutil.which("ss") is not None, "ss (iproute2) is needed to cut connections")
    cut = subprocess.run(["ss", "-K", "-t", "state", "established", f"( sport = :{port} )"],
                         capture_output=True, text=True, check=False)
    require(cut.returncode == 0 and f":{port}" in cut.stdout,
            f"ss -K cannot destroy sockets here: {cut.stderr.strip()}")
    for i in range(3):
        assert csp_env.cspctl("send", "@all", f"across the cut {i}").returncode == 0
    wait_for(lambda: int(browser.find_element("id", "conn").get_attribute("data-opened"))
             > opened, what="the page to reconnect")
    # the agent may still be replying: compare with what is stored at each look
    wait_for(lambda: [m["id"] for m in shown(browser)] == stored_ids(csp_env),
             what="every stored message on the page after the reconnect")

    # search finds a message; the result is rendered like the timeline (as text)
    search = browser.find_element("id", "search")
    search.send_keys("burst 3\n")
    wait_for(lambda: browser.find_element("id", "results").is_displayed(), what="results")
    assert "burst 3" in browser.find_element("id", "result-list").text

    # another room: switch to it, see only its messages, post there with the urgent switch
    from selenium.webdriver.support.ui import Select

    browser.find_element("id", "results-close").click()
    assert csp_env.cspctl("rooms", "create", "ops").returncode == 0
    assert csp_env.cspctl("send", "#ops", "in ops").returncode == 0
    browser.refresh()  # the room list is read at load (and every 10 s)
    wait_for(lambda: browser.find_element("id", "conn").text == "live", what="live again")
    Select(browser.find_element("id", "room")).select_by_value("ops")
    wait_for(lambda: [m["body"] for m in shown(browser)] == ["in ops"], what="#ops alone")
    browser.find_element("id", "urgent").click()
    browser.find_element("id", "text").send_keys("urgent in ops\n")
    mine = wait_for(lambda: [m for m in history(csp_env) if m["content"] == "urgent in ops"],
                    what="the urgent message stored")
    assert mine[0]["room"] == "ops" and mine[0]["urgent"] is True and mine[0]["to"] == ["all"]
    wait_for(lambda: [m["body"] for m in shown(browser)] == ["in ops", "urgent in ops"],
             what="the page's own message in #ops")

    # the browser's own checks: a foreign Host or Origin is refused, with or without cookie
    jar = {"Cookie": f"csp_session={cookie['value']}"}
    own = {"Host": f"127.0.0.1:{port}"}
    status, headers, _ = raw(port, "GET", "/web/", own)
    assert status == 200
    csp = headers["content-security-policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp and "unsafe" not in csp
    assert raw(port, "GET", "/web/", {"Host": f"evil.example:{port}"})[0] == 403
    assert raw(port, "GET", "/v1/agents", {**jar, **own})[0] == 200
    assert raw(port, "GET", "/v1/agents", {**jar, "Host": f"evil.example:{port}"})[0] == 403
    assert raw(port, "GET", "/v1/agents", {"Host": f"127.0.0.1:{port}"})[0] == 401
    before = len(history(csp_env))
    post = {"to": ["@all"], "content": "forged"}
    assert raw(port, "POST", "/v1/messages",
               {**jar, **own, "Origin": "http://evil.example"}, post)[0] == 403
    assert raw(port, "POST", "/v1/messages", {**jar, **own}, post)[0] == 403  # no Origin
    assert raw(port, "POST", "/v1/messages", {**jar, **own, "Origin": origin}, post)[0] == 201
    # (the agent may still be replying to earlier messages: only the human's count)
    assert [m["content"] for m in history(csp_env)[before:]
            if m["from"] == "human"] == ["forged"]
    ws = {**jar, **own, "Upgrade": "websocket", "Connection": "Upgrade",
          "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version": "13"}
    assert raw(port, "GET", "/v1/stream", {**ws, "Origin": "http://evil.example"})[0] == 403
    # a session cannot mint login codes, and a forged cookie is nobody
    assert raw(port, "POST", "/v1/web/code", {**jar, **own, "Origin": origin})[0] == 403
    assert raw(port, "GET", "/v1/agents", {"Cookie": "csp_session=forged", **own})[0] == 401

    # the renderer alone, on what an attacker (or a confused agent) could write
    out = browser.execute_script("""
        const md = window.cspMarkdown;
        const box = (text) => { const d = document.createElement('div');
                                d.appendChild(md.render(text)); return d; };
        const links = (text) => [...box(text).querySelectorAll('a')].map(a => a.href);
        const big = '*a_ `x` [y](z) <b>'.repeat(3600);  // about 64 KiB, the message limit
        const t0 = performance.now();
        const rendered = box(big);
        return {
          mixed_case: links('[a](JaVaScRiPt:alert(1))'),
          data: links('[a](data:text/html,<script>alert(1)</script>)'),
          angle: links('<javascript:alert(1)>'),
          parens: links('[ok](https://example.com/a_(b))'),
          image: [links('![i](https://example.com/x.png)'),
                  box('![i](https://example.com/x.png)').querySelectorAll('img').length],
          fence: box('```\\n<b>x</b>\\n').querySelector('pre code').textContent,
          big_ms: performance.now() - t0,
          big_elements: rendered.querySelectorAll('*').length,
          big_text: rendered.textContent.length,
        };""")
    assert out["mixed_case"] == [] and out["data"] == [] and out["angle"] == []
    assert out["parens"] == ["https://example.com/a_(b)"]
    assert out["image"] == [["https://example.com/x.png"], 0]
    assert out["fence"] == "<b>x</b>"
    assert out["big_ms"] < 1000, out
    (artifacts_dir() / "web-markdown-64k.json").write_text(json.dumps(
        {k: out[k] for k in ("big_ms", "big_elements", "big_text")}) + "\n")

    # the agent stayed well through all of it, and the page did not log an error
    wait_for(lambda: agent_state(csp_env, "fa-1").get("state") == "ready", what="fa-1 idle")
    severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"
              and "403" not in e["message"]]
    assert severe == [], severe


def test_web_needs_a_listener_that_proves_it_is_the_gateway(
        csp_env: CspEnv, web_gateway: TcpGatewayProcess) -> None:
    """``cspctl web`` sends no code to a port another program holds."""
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen()
    port = squatter.getsockname()[1]

    def serve() -> None:  # the probe that it listens, then the request for the proof
        squatter.settimeout(20)
        for _ in range(2):
            conn, _ = squatter.accept()
            if not conn.recv(65536):
                conn.close()
                continue
            body = b'{"proof": "0"}'
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         b"Content-Length: " + str(len(body)).encode()
                         + b"\r\nConnection: close\r\n\r\n" + body)
            conn.close()
            return

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        r = csp_env.cspctl("web", "--no-open",
                           extra_env={"CSP_GATEWAY": f"http://127.0.0.1:{port}"})
    finally:
        thread.join(5)
        squatter.close()
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "is not this user's gateway" in r.stderr and "code=" not in r.stdout


def post_many(port: int, token: str, texts: list[str]) -> None:
    """Post messages over one keep-alive connection (the room filled quickly)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    try:
        for text in texts:
            conn.request("POST", "/v1/messages", json.dumps({"to": ["@all"], "content": text}),
                         headers)
            resp = conn.getresponse()
            resp.read()
            assert resp.status == 201, resp.status
    finally:
        conn.close()


def test_ten_thousand_messages_stay_quick(csp_env: CspEnv, web_gateway: TcpGatewayProcess,
                                          browser: Any) -> None:
    """A room of 10,000 messages: the page opens, scrolls back and takes new ones quickly,
    with a bounded DOM (figures go to the artifacts dir as web-10k.json)."""
    count = 10_000
    started = time.monotonic()
    post_many(web_gateway.port, web_gateway.token,
              [f"message {i}\n\n- item `{i}`\n- **bold** {i}" for i in range(count)])
    filled = time.monotonic() - started

    started = time.monotonic()
    browser.get(login_url(csp_env))
    wait_for(lambda: browser.find_element("id", "conn").text == "live", what="live")
    opened = time.monotonic() - started
    assert shown(browser)[-1]["body"].startswith(f"message {count - 1}")

    # scroll back 20 times: earlier pages load, the DOM stays a window
    started = time.monotonic()
    for _ in range(20):
        first = shown(browser)[0]["id"]
        browser.execute_script("document.getElementById('timeline').scrollTop = 0;")
        wait_for(lambda f=first: shown(browser)[0]["id"] < f, what="earlier messages")
    back = time.monotonic() - started
    nodes = len(shown(browser))
    assert nodes <= 300 + 100, nodes

    # a live message while scrolled back: not drawn into the window, offered by the button
    post_many(web_gateway.port, web_gateway.token, ["the newest one"])
    wait_for(lambda: browser.find_element("id", "jump").is_displayed(), what="the jump button")
    started = time.monotonic()
    browser.find_element("id", "jump").click()
    wait_for(lambda: shown(browser)[-1]["body"] == "the newest one", what="the newest shown")
    jumped = time.monotonic() - started
    figures = {"messages": count, "fill_s": round(filled, 2), "open_to_live_s": round(opened, 2),
               "twenty_pages_back_s": round(back, 2), "dom_messages_max": nodes,
               "jump_to_newest_s": round(jumped, 2)}
    (artifacts_dir() / "web-10k.json").write_text(json.dumps(figures, indent=1) + "\n")
    assert opened < 10 and back < 30 and jumped < 5, figures


def test_web_without_a_tcp_listener_says_how_to_get_one(csp_env: CspEnv) -> None:
    """No TCP listener and no systemd user manager to start one: exit 3, and what to do."""
    port = free_port()
    csp_env.config.parent.mkdir(parents=True, exist_ok=True)
    csp_env.config.write_text(f"[gateway]\ntcp_port = {port}\n")
    gw = GatewayProcess(csp_env)  # on its unix socket only
    try:
        gw.start()
        r = csp_env.cspctl("web", "--no-open")
    finally:
        gw.stop()
    assert r.returncode == 3, (r.stdout, r.stderr)
    assert f"nothing listens on 127.0.0.1:{port}" in r.stderr and "cspd --tcp" in r.stderr
    assert r.stdout == ""
