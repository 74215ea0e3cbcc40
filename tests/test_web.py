"""The web page at `/`, driven in Debian's headless Chromium through Selenium over loopback.

Skips where /usr/bin/chromium or /usr/bin/chromedriver is missing (a developer's machine); CI
installs both (.ci/run). The screenshot goes to $LTM_ARTIFACTS (default: the test's tmp dir); with
LTM_WEB_SCREENSHOT=docs/serving-web.png it is also copied there, to refresh the one the docs show.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import httpx
import pytest
from conftest import serve

from ltm.serve.app import create_app
from ltm.serve.engine import Engine
from ltm.serve.memory import MemoryStore

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
                                reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")
WAIT = 60  # seconds; generous because CI machines are small and shared
QUESTION = "THEON: Can a thing be measured without being changed?"


@pytest.fixture(scope="module")
def engine(exported):
    return Engine(exported)


@pytest.fixture
def server(engine, tmp_path):
    server, url = serve(create_app(engine, memory=MemoryStore(tmp_path / "memory")))
    yield url
    server.should_exit = True


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    # No network on CI: without the background-networking flags Chromium's own connections fail noisily.
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'chromium'}", "--window-size=1400,1000"):
        options.add_argument(flag)
    # An explicit driver path keeps Selenium Manager from trying to download one.
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    yield driver
    driver.quit()


def _wait(driver, condition, message: str):
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    # Stale elements are expected: the page re-renders its lists while the test polls them.
    wait = WebDriverWait(driver, WAIT, poll_frequency=0.1, ignored_exceptions=[StaleElementReferenceException])
    return wait.until(lambda d: condition(d), message)


def _one(driver, css: str):
    return driver.find_element("css selector", css)


def _all(driver, css: str) -> list:
    return driver.find_elements("css selector", css)


def _fill(driver, css: str, text: str) -> None:
    field = _one(driver, css)
    field.clear()
    field.send_keys(text)


def _text(element) -> str:
    return element.get_property("textContent")  # exact, unlike .text, which folds whitespace


def _shown_error(driver, css: str) -> str:
    return _wait(driver, lambda d: _one(d, css).is_displayed() and _text(_one(d, css)), f"no error shown in {css}")


def _memory_ids(driver) -> list[int]:
    # One script call, so a re-render between finding the items and reading them cannot interleave.
    return [int(i) for i in driver.execute_script("return [...document.querySelectorAll('#memory-list li')].map(li => li.dataset.id)")]


def _screenshot(driver, request, tmp_path: Path) -> Path:
    folder = Path(os.environ.get("LTM_ARTIFACTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "web.png"
    assert driver.save_screenshot(str(path)), f"no screenshot written to {path}"
    if os.environ.get("LTM_WEB_SCREENSHOT"):
        shutil.copyfile(path, request.config.rootpath / os.environ["LTM_WEB_SCREENSHOT"])
    return path


def test_chat_scene_and_memory_through_the_page(server, browser, request, tmp_path):
    browser.get(server + "/")
    _wait(browser, lambda d: _text(_one(d, "#model-name")) == "hf", "the page did not show the model name from /v1/models")
    _wait(browser, lambda d: _one(d, "#memory-empty").is_displayed(), "the empty memory was not shown as empty")

    # Chat. Greedy decoding, so the page's answer can be compared with the server's own; every change
    # of the answer's text is counted, since the page must append tokens as they arrive.
    _fill(browser, "#chat-temperature", "0")
    browser.execute_script("""
        window.updates = 0;
        new MutationObserver((records) => {
          for (const r of records) {
            const node = r.target.nodeType === Node.ELEMENT_NODE ? r.target : r.target.parentElement;
            if (node && node.closest('.msg.assistant')) window.updates += 1;
          }
        }).observe(document.getElementById('messages'), {subtree: true, childList: true, characterData: true});
    """)
    _fill(browser, "#chat-input", QUESTION)
    _one(browser, "#chat-send").click()
    answer = _wait(browser, lambda d: _all(d, '.msg.assistant[data-state="done"]'), "no finished answer")[0]
    streamed = _text(answer.find_element("css selector", ".body"))
    whole = httpx.post(f"{server}/v1/chat/completions", timeout=WAIT, json={
        "messages": [{"role": "user", "content": QUESTION}], "max_tokens": 128, "temperature": 0}).json()["choices"][0]["message"]["content"]
    assert whole, "the tiny model answered nothing at temperature 0; the test needs a non-empty answer"
    assert streamed == whole
    # The page must append the answer piece by piece as the server streams it. How many pieces that
    # is depends on the tiny model's greedy answer: bytes that do not yet form a character are held
    # back until they do, so an answer of such bytes arrives in one piece.
    raw = httpx.post(f"{server}/v1/chat/completions", timeout=WAIT, json={
        "messages": [{"role": "user", "content": QUESTION}], "max_tokens": 128, "temperature": 0, "stream": True}).text
    chunks = [json.loads(line[len("data: "):]) for line in raw.splitlines() if line.startswith("data: {")]
    pieces = sum(1 for chunk in chunks if chunk["choices"][0].get("delta", {}).get("content"))
    assert browser.execute_script("return window.updates") >= min(pieces, 2), "the answer was set in one piece, not token by token"
    assert [_text(m) for m in _all(browser, ".msg.user .body")] == [QUESTION]

    # The exchange was remembered in namespace "web" (the page sends it) and the memory panel lists it.
    _wait(browser, lambda d: len(_memory_ids(d)) == 1, "the memory panel does not list the chat exchange")
    records = httpx.get(f"{server}/v1/memory", params={"namespace": "web"}).json()["records"]
    assert [r["meta"]["kind"] for r in records] == ["chat"] and QUESTION in records[0]["text"] and whole in records[0]["text"]
    assert _memory_ids(browser) == [records[0]["id"]]
    assert _text(_one(browser, "#memory-list li .text")) == records[0]["text"]

    # A scene query: the panel shows the structured answer, the same one the server remembered.
    _fill(browser, "#scene-scene", "Theon weighs a stone, then tries to weigh a feeling.")
    _fill(browser, "#scene-tension", "measure vs. change")
    _fill(browser, "#scene-vector", "towards what naming does")
    _fill(browser, "#scene-archetype", "the skeptic")
    _fill(browser, "#scene-question", "Does naming a feeling change it?")
    _fill(browser, "#scene-critic-rounds", "1")
    _one(browser, "#scene-send").click()
    _wait(browser, lambda d: _one(d, "#scene-result").is_displayed() or _one(d, "#scene-error").is_displayed(), "no scene answer")
    assert not _one(browser, "#scene-error").is_displayed(), _text(_one(browser, "#scene-error"))
    _wait(browser, lambda d: len(_memory_ids(d)) == 2, "the memory panel does not list the scene")
    records = httpx.get(f"{server}/v1/memory", params={"namespace": "web"}).json()["records"]
    assert [r["meta"]["kind"] for r in records] == ["scene", "chat"] and _memory_ids(browser) == [r["id"] for r in records]
    response, conclusion = _text(_one(browser, "#scene-response")), _text(_one(browser, "#scene-conclusion"))
    assert response and conclusion and f"Answer: {response}\nConclusion: {conclusion}" in records[0]["text"]
    roles = [_text(role) for role in _all(browser, "#scene-roles li")]
    assert roles and all(role and role != "—" for role in roles)
    assert _text(_one(browser, "#scene-out-tension")) not in ("", "—") and _text(_one(browser, "#scene-out-vector")) not in ("", "—")
    assert len(_all(browser, "#scene-critiques li")) == 1
    # The scene recalled the earlier chat exchange from memory, and the panel says so.
    assert [_text(hit.find_element("css selector", "span:last-child")) for hit in _all(browser, "#scene-recalled li")] == [records[1]["text"]]

    _screenshot(browser, request, tmp_path)

    # Search lists the API's hits in its order, with their scores.
    _fill(browser, "#memory-q", "feeling")
    _one(browser, "#memory-search").click()
    hits = httpx.get(f"{server}/v1/memory/search", params={"namespace": "web", "q": "feeling", "k": 5}).json()["results"]
    _wait(browser, lambda d: _memory_ids(d) == [h["id"] for h in hits] and "score" in _text(_one(d, "#memory-list li .info")),
          "the search results are not the API's")

    # Delete removes the chat exchange from the store and from the list.
    _one(browser, "#memory-refresh").click()
    # Wait for the list itself (not the two search hits still shown), or the click below meets a stale element.
    _wait(browser, lambda d: _memory_ids(d) == [r["id"] for r in records] and "score" not in _text(_one(d, "#memory-list li .info")),
          "'All' did not list both records again")
    chat_id = records[1]["id"]
    _one(browser, f'#memory-list li[data-id="{chat_id}"] .delete').click()
    _wait(browser, lambda d: _memory_ids(d) == [records[0]["id"]], "the deleted record is still listed")
    assert [r["id"] for r in httpx.get(f"{server}/v1/memory", params={"namespace": "web"}).json()["records"]] == [records[0]["id"]]

    # API errors (4xx) are shown in the page with the server's reason.
    _fill(browser, "#chat-max-tokens", "5000")
    _fill(browser, "#chat-input", "again")
    _one(browser, "#chat-send").click()
    error = _shown_error(browser, "#chat-error")
    assert error.startswith("400: ") and "over this server's limit" in error
    assert _all(browser, '.msg.assistant[data-state="error"]')
    _fill(browser, "#scene-lens", "no-such-lens")
    _one(browser, "#scene-send").click()
    error = _shown_error(browser, "#scene-error")
    assert error.startswith("400: ") and "no-such-lens" in error


def test_a_chat_that_outgrows_the_context_shows_a_note(engine, browser):
    server, url = serve(create_app(engine))
    try:
        browser.get(url + "/")
        _fill(browser, "#chat-max-tokens", "24")
        _fill(browser, "#chat-temperature", "0")
        shown_at = None
        for n in range(8):  # the model's context is 64 tokens: a few exchanges outgrow it
            _fill(browser, "#chat-input", f"Why {n}?")
            _one(browser, "#chat-send").click()
            _wait(browser, lambda d: len(_all(d, '.msg.assistant[data-state="done"]')) == n + 1, f"no answer to message {n}")
            if _one(browser, "#chat-note").is_displayed():
                shown_at = n
                break
        assert shown_at is not None and shown_at > 0, "no note although the conversation outgrew the context"
        assert "left out" in _text(_one(browser, "#chat-note"))
        _one(browser, "#chat-clear").click()
        assert not _one(browser, "#chat-note").is_displayed()
    finally:
        server.should_exit = True


def test_the_key_field_and_a_server_without_memory(engine, browser):
    server, url = serve(create_app(engine, api_key="sesame"))
    try:
        # The page itself loads without the key; its API calls get 401 until the key is entered.
        browser.get(url + "/")
        assert _shown_error(browser, "#chat-error").startswith("401: ")
        _one(browser, "#api-key").send_keys("sesame")
        _one(browser, "#chat-input").click()  # leaving the field commits it (a change event)
        _wait(browser, lambda d: _text(_one(d, "#model-name")) == "hf", "the key was not sent with /v1/models")
        assert not _one(browser, "#chat-error").is_displayed()
        # This server keeps no memory: the page says so and chats without a namespace, which it would refuse.
        _wait(browser, lambda d: _one(d, "#memory-off").is_displayed(), "the page did not notice that memory is off")
        assert not _one(browser, "#memory-error").is_displayed() and not _one(browser, "#memory-q").is_enabled()
        # The message is markup on purpose: the page must show it as text, not run it.
        markup = '<img src="x" onerror="window.ran = 1">hello'
        _fill(browser, "#chat-input", markup)
        _one(browser, "#chat-send").click()
        _wait(browser, lambda d: _all(d, '.msg.assistant[data-state="done"]') or _one(d, "#chat-error").is_displayed(), "no answer")
        assert not _one(browser, "#chat-error").is_displayed(), _text(_one(browser, "#chat-error"))
        assert _text(_one(browser, ".msg.user .body")) == markup and not _all(browser, "#messages img")
        assert browser.execute_script("return window.ran") is None
        # The key is kept in localStorage across a reload.
        browser.refresh()
        assert _one(browser, "#api-key").get_property("value") == "sesame"
        _wait(browser, lambda d: _text(_one(d, "#model-name")) == "hf", "the stored key was not used after a reload")
    finally:
        server.should_exit = True
