"""The page at / (server/page/), driven in headless Chromium against a real `bgremove serve`.

One browser for the module (tests/browser.py: offline, a fresh profile); each test opens the page
afresh with empty storage. The main server is `bgremove serve` in a subprocess, as an operator runs
it; the rate-limit test uses the same app in-process with a two-second window (serve's window is a
minute, and a test should not wait out a minute), and the hostile-message test puts a front before
the app that answers with markup, as a misbehaving proxy could.
"""

from __future__ import annotations

import io
import json
import os
import re
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from bgremove.contract import check_upload
from bgremove.errors import ImageError
from bgremove.server.store import KeyStore, key_id_of, open_store
from tests import browser as chromium
from tests.serving import ServeProcess, serve_app

HOSTILE_NAME = "<img src=x onerror=alert(1)>.png"
HOSTILE_ERROR = "<b>bold</b> <img src=x onerror=alert(2)> <script>alert(3)</script>"
BROKEN = b"this is not an image, whatever its name says"
PHONE = (390, 844)  # CSS pixels, as a common phone's screen
WAIT = 120.0  # the model on two shared cores: generous, the tests end as soon as it is done


# ---- servers, keys, photos ------------------------------------------------------------------

@pytest.fixture(scope="module")
def db(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("page-keys") / "keys.sqlite3"


@pytest.fixture(scope="module")
def store(db) -> Iterator[KeyStore]:
    with open_store(db) as keys:
        yield keys


@pytest.fixture(scope="module")
def served(db, store) -> Iterator[str]:
    """`bgremove serve` as an operator starts it: the page is on by default."""
    server = ServeProcess("--db", str(db), "--workers", "2")
    try:
        yield server.wait_ready().url
    finally:
        server.stop()


@pytest.fixture(scope="module")
def session():
    from bgremove.backends.local import LocalSession

    local = LocalSession(threads=1)  # one model for the in-process servers
    try:
        yield local
    finally:
        local.close()


@pytest.fixture(scope="module")
def limited(store, session) -> Iterator[str]:
    from bgremove.server import create_app

    app = create_app(store, rate_limit=2, rate_window=2.0, max_concurrency=2, session=session)
    with serve_app(app) as url:
        yield url


class MarkupFront:
    """Answers every upload with an error message made of markup; the rest goes to the app."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/api/"):
            body = json.dumps({"error": HOSTILE_ERROR}).encode()
            await send({"type": "http.response.start", "status": 400, "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)


@pytest.fixture(scope="module")
def hostile(store, session) -> Iterator[str]:
    from bgremove.server import create_app

    with serve_app(MarkupFront(create_app(store, session=session))) as url:
        yield url


@pytest.fixture(scope="module")
def photos(tmp_path_factory, samples) -> dict[str, Path]:
    """Small copies of the samples, in each format the API takes, a broken file, and a photo
    named like markup."""
    folder = tmp_path_factory.mktemp("photos")
    made = {}
    for name in ("coffee.png", "astronaut.jpg", "chelsea.webp", "rocket.jpg", "camera.png"):
        image = Image.open(samples / name)
        image.thumbnail((128, 128))
        image.save(folder / name)
        made[name] = folder / name
    (folder / "broken.jpg").write_bytes(BROKEN)
    made["broken.jpg"] = folder / "broken.jpg"
    (folder / HOSTILE_NAME).write_bytes(made["coffee.png"].read_bytes())
    made[HOSTILE_NAME] = folder / HOSTILE_NAME
    return made


# ---- the browser ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def browser(tmp_path_factory) -> Iterator[Any]:
    chromium.skip_or_fail()
    profile = tmp_path_factory.mktemp("chromium-profile")
    with chromium.chromium(profile, tmp_path_factory.mktemp("downloads")) as driver:
        yield driver


@pytest.fixture
def downloads(browser, tmp_path) -> Path:
    folder = tmp_path / "downloads"
    folder.mkdir()
    browser.execute_cdp_cmd("Browser.setDownloadBehavior",
                            {"behavior": "allow", "downloadPath": str(folder)})
    return folder


@pytest.fixture
def traffic(browser) -> chromium.Traffic:
    recorded = chromium.Traffic()
    recorded.clear(browser)
    return recorded


def open_page(driver: Any, url: str, phone: bool = False) -> None:
    """The page in a state a new tab would see: no key, no saved options; on a desktop screen,
    or a phone's (headless Chromium's window is never narrower than 500 px: emulated instead)."""
    driver.set_window_size(1280, 1000)
    if phone:
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": PHONE[0], "height": PHONE[1], "deviceScaleFactor": 2, "mobile": True})
    else:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    driver.get(url + "/")
    driver.execute_script("sessionStorage.clear(); localStorage.clear();")
    driver.get(url + "/")
    wait_for(driver, lambda: driver.find_elements("id", "option-mode"), "the API's options")


def wait_for(driver: Any, ready: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = ready()
        if value:
            return value
        if time.monotonic() > deadline:
            status = driver.find_element("id", "status").text
            raise AssertionError(f"timed out waiting for {what}; the page says: {status!r}")
        time.sleep(0.1)


def enter_key(driver: Any, key: str) -> None:
    from selenium.webdriver.common.keys import Keys

    driver.find_element("id", "key-input").send_keys(key + Keys.ENTER)


def choose(driver: Any, *paths: Path) -> None:
    """Files chosen with the page's file picker."""
    driver.find_element("id", "files").send_keys("\n".join(str(p) for p in paths))


def cards(driver: Any, state: str = "") -> list[Any]:
    return driver.find_elements("css selector", f"#results li.item{'.' + state if state else ''}")


def count(driver: Any, state: str) -> int:
    return len(cards(driver, state))


def card_named(driver: Any, name: str) -> Any:
    for card in cards(driver):
        if card.find_element("css selector", ".name").text == name:
            return card
    raise AssertionError(f"no card for {name!r}")


def text_of(driver: Any, element_id: str) -> str:
    # textContent, not .text: it is what the page set, hidden or not.
    return driver.find_element("id", element_id).get_attribute("textContent")


def seen(driver: Any) -> dict[str, list[Any]]:
    return driver.execute_script("return window.__seen")


def balance(store: KeyStore, key: str) -> int:
    info = store.authenticate(key)
    assert info is not None
    return info.credits


def assert_cutout(data: bytes) -> str:
    """A PNG or WebP with an alpha channel that is really used; its format's name."""
    image = Image.open(io.BytesIO(data))
    assert image.format in ("PNG", "WEBP"), image.format
    assert image.mode in ("RGBA", "LA"), image.mode
    low, high = image.getchannel("A").getextrema()
    assert low < 128 and high == 255, "the cut-out has a transparent background and a subject"
    return image.format


def downloaded(folder: Path, name: str) -> bytes:
    path = folder / name
    deadline = time.monotonic() + 30
    while not path.exists() or any(folder.glob("*.crdownload")):
        assert time.monotonic() < deadline, f"{name} was not downloaded: {os.listdir(folder)}"
        time.sleep(0.1)
    return path.read_bytes()


# ---- without a browser: what the server answers -----------------------------------------------

def test_the_page_is_served_with_a_policy_that_allows_only_its_own_origin(served):
    page = httpx.get(served + "/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert directives["default-src"] == "'self'"
    assert directives["script-src"] == "'self'"
    assert directives["connect-src"] == "'self'"
    assert "unsafe" not in policy and "http" not in policy and "*" not in policy
    # Nothing inline for that policy to forbid: scripts and styles are the page's own files.
    html = page.text
    assert re.findall(r"<script[^>]*>", html) == [
        '<script src="/page/zip.js" defer>', '<script src="/page/app.js" defer>']
    assert "<style" not in html and " style=" not in html
    assert not re.search(r"\son[a-z]+=", html), "no inline event handlers"
    for asset, media in (("app.js", "text/javascript"), ("zip.js", "text/javascript"),
                         ("style.css", "text/css"), ("icon.svg", "image/svg+xml")):
        answer = httpx.get(f"{served}/page/{asset}")
        assert answer.status_code == 200 and answer.headers["content-type"].startswith(media)
        assert answer.headers["content-security-policy"] == policy
    # In the OpenAPI description as what it is: a page beside the API, not one of its operations.
    spec = httpx.get(served + "/openapi.json").json()
    assert not [path for path in spec["paths"] if path == "/" or path.startswith("/page")]
    assert "web page for people, served at `/`" in spec["info"]["description"]


def test_serve_no_ui_turns_the_page_off_and_leaves_the_api_alone(db, store, photos):
    key = store.create("no-ui@example.com", 1)
    server = ServeProcess("--db", str(db), "--workers", "1", "--no-ui")
    try:
        url = server.wait_ready().url
        for path in ("/", "/page/app.js"):
            answer = httpx.get(url + path)
            assert answer.status_code == 404
            assert answer.json() == {"error": "Not Found"}
        spec = httpx.get(url + "/openapi.json").json()
        assert "/api/remove-background/" in spec["paths"]
        assert "web page" not in spec["info"]["description"]
        cut = httpx.post(url + "/api/remove-background/", headers={"x-api-key": key},
                         files={"file": ("coffee.png", photos["coffee.png"].read_bytes())},
                         timeout=WAIT)
        assert cut.status_code == 200, cut.text
        assert cut.headers["x-user-credits"] == "0"
    finally:
        server.stop()
    assert b"page for people" not in server.stderr


# ---- in the browser -----------------------------------------------------------------------------

def test_three_photos_and_a_broken_file(browser, served, store, photos, downloads, traffic):
    key = store.create("designer@example.com", 10)
    open_page(browser, served)
    enter_key(browser, key)
    names = ["coffee.png", "astronaut.jpg", "chelsea.webp", "broken.jpg"]
    choose(browser, *(photos[name] for name in names))
    wait_for(browser, lambda: count(browser, "done") == 3 and count(browser, "failed") == 1,
             "three cut-outs and one failure")

    # Credits shown dropping by exactly three, as the key database says.
    assert text_of(browser, "credits-left") == "7"
    assert balance(store, key) == 7
    assert text_of(browser, "status") == "3 of 4 done, 1 failed."

    # The broken file, named, with the API's own reason.
    with pytest.raises(ImageError) as refused:
        check_upload(BROKEN)
    failed = card_named(browser, "broken.jpg")
    assert "failed" in failed.get_attribute("class")
    assert failed.find_element("css selector", ".state").text == f"Failed: {refused.value}"
    assert not failed.find_element("css selector", ".download").is_displayed()

    # Each cut-out shown beside its photo, and downloadable one by one...
    singles = {}
    for name in names[:3]:
        card = card_named(browser, name)
        for image in card.find_elements("css selector", "img"):
            assert browser.execute_script("return arguments[0].naturalWidth", image) > 0
        card.find_element("css selector", ".download").click()
        out = name.rsplit(".", 1)[0] + ".webp"  # the API's default format
        singles[out] = downloaded(downloads, out)
        assert assert_cutout(singles[out]) == "WEBP"
    # ... or all at once, in a zip holding the same bytes.
    browser.find_element("id", "download-all").click()
    with zipfile.ZipFile(io.BytesIO(downloaded(downloads, "cutouts.zip"))) as archive:
        assert archive.testzip() is None
        assert {name: archive.read(name) for name in archive.namelist()} == singles

    screenshots = os.environ.get("BGREMOVE_SCREENSHOT_DIR")
    if screenshots:  # the README's picture: BGREMOVE_SCREENSHOT_DIR=docs/images pytest ...
        browser.set_window_size(1280, 1100)
        browser.execute_script("window.scrollTo(0, 0)")
        browser.save_screenshot(str(Path(screenshots) / "serve-page.png"))

    # On a colour the user picks, instead of the checkerboard.
    frame = card_named(browser, "coffee.png").find_element("css selector", ".backdrop-frame")
    assert "linear-gradient" in frame.value_of_css_property("background-image")
    browser.find_element("css selector", "input[name=backdrop][value=colour]").click()
    browser.execute_script("const c = document.getElementById('backdrop-colour');"
                           "c.value = '#ff8800'; c.dispatchEvent(new Event('input'));")
    assert frame.value_of_css_property("background-image") == "none"
    assert frame.value_of_css_property("background-color") == "rgba(255, 136, 0, 1)"
    browser.find_element("css selector", "input[name=backdrop][value=checker]").click()

    # Nothing but this origin was asked for: page, script, style, options, uploads, downloads.
    traffic.read(browser)
    assert any(url.endswith("/api/remove-background/") for url in traffic.requests)
    strangers = [url for url in traffic.requests
                 if not url.startswith((served + "/", "blob:" + served + "/", "data:"))]
    assert strangers == []
    assert seen(browser) == {"dialogs": [], "violations": []}
    # The key never went into a URL.
    assert not [url for url in traffic.requests if key in url]


def test_a_wrong_key_is_refused_in_words_and_nothing_is_lost(browser, served, store, photos):
    key = store.create("wrong-key@example.com", 5)
    open_page(browser, served)
    enter_key(browser, "bgr_" + "0" * 8 + "_notakey")
    choose(browser, photos["coffee.png"], photos["rocket.jpg"])
    wait_for(browser, lambda: count(browser, "unsent") == 2, "both photos held back")
    alert = browser.find_element("id", "alert")
    assert alert.is_displayed()
    assert alert.text == "The server refused the key: invalid API key. Enter a valid key to go on."
    assert count(browser, "done") == 0 and balance(store, key) == 5
    # The key form is back, and the right key sends what was held back.
    assert browser.find_element("id", "key-form").is_displayed()
    enter_key(browser, key)
    wait_for(browser, lambda: count(browser, "done") == 2, "both cut-outs")
    assert not browser.find_element("id", "alert").is_displayed()
    assert text_of(browser, "credits-left") == "3" and balance(store, key) == 3


def test_a_key_out_of_credits_stops_with_the_message_and_keeps_the_rest(browser, served, store,
                                                                       photos):
    key = store.create("one-credit@example.com", 1)
    open_page(browser, served)
    enter_key(browser, key)
    choose(browser, photos["coffee.png"], photos["astronaut.jpg"])
    wait_for(browser, lambda: count(browser, "done") == 1 and count(browser, "unsent") == 1,
             "one cut-out, then the refusal")
    assert browser.find_element("id", "alert").text.startswith(
        "The key has no credits left: insufficient credits: this key has no credits left. "
        "Nothing was charged for the photos not sent")
    assert text_of(browser, "credits-left") == "0" and balance(store, key) == 0
    # Nothing lost: once the key has a credit again, the photo not sent goes.
    store.add_credits(key_id_of(key), 1)
    browser.find_element("id", "resend").click()
    wait_for(browser, lambda: count(browser, "done") == 2, "the second cut-out")
    assert balance(store, key) == 0
    assert text_of(browser, "status") == "2 of 2 done."


def test_a_batch_bigger_than_the_rate_limit_all_arrives(browser, limited, store, photos,
                                                        traffic):
    key = store.create("busy@example.com", 20)
    open_page(browser, limited)
    enter_key(browser, key)
    batch = ["coffee.png", "astronaut.jpg", "chelsea.webp", "rocket.jpg", "camera.png"]
    choose(browser, *(photos[name] for name in batch))
    wait_for(browser, lambda: count(browser, "done") == 5, "every cut-out")
    assert count(browser, "failed") == 0
    assert balance(store, key) == 15 and text_of(browser, "credits-left") == "15"
    statuses = [status for url, status in traffic.read(browser).responses
                if url.endswith("/api/remove-background/")]
    assert statuses.count(200) == 5
    assert statuses.count(429) >= 1, "the limit (2 per 2 s) was reached, and waited out"


def assert_nothing_ran(driver: Any) -> None:
    """The only images are the photos and cut-outs the page made; no script ran, none tried."""
    sources = driver.execute_script(
        "return Array.from(document.images, (i) => i.getAttribute('src') || '')")
    assert all(src.startswith("blob:") for src in sources if src), sources
    assert seen(driver) == {"dialogs": [], "violations": []}


def test_hostile_text_stays_text(browser, served, hostile, store, photos):
    key = store.create("hostile@example.com", 5)
    open_page(browser, served)
    enter_key(browser, key)
    choose(browser, photos[HOSTILE_NAME])
    wait_for(browser, lambda: count(browser, "done") == 1, "the cut-out")
    card = cards(browser)[0]
    assert card.find_element("css selector", ".name").text == HOSTILE_NAME
    assert card.find_element("css selector", ".download").get_attribute("download") == (
        "<img src=x onerror=alert(1)>.webp")
    assert_nothing_ran(browser)

    # An error message made of markup (from a misbehaving proxy) is shown as its characters.
    open_page(browser, hostile)
    enter_key(browser, key)
    choose(browser, photos["coffee.png"])
    wait_for(browser, lambda: count(browser, "failed") == 1, "the refusal")
    state = cards(browser)[0].find_element("css selector", ".state")
    assert state.text == f"Failed: {HOSTILE_ERROR}"
    assert state.find_elements("css selector", "*") == []
    assert_nothing_ran(browser)
    assert balance(store, key) == 4

    # The second wall: were markup ever inserted as such, the policy would stop its script.
    browser.execute_script("""document.getElementById("results").insertAdjacentHTML("beforeend",
        '<li><img src="x" onerror="window.__ran = 1"><script>window.__ran = 2</script></li>')""")
    wait_for(browser, lambda: seen(browser)["violations"], "the policy to refuse the handler")
    assert browser.execute_script("return window.__ran") is None
    assert seen(browser)["violations"] == ["script-src-attr inline"]


def test_the_page_fits_a_phone_and_works_from_the_keyboard(browser, served, store, photos):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    key = store.create("phone@example.com", 2)
    open_page(browser, served, phone=True)
    assert browser.execute_script("return window.innerWidth") == PHONE[0]
    # From the top of the page, Tab reaches the key field and, after the options, the picker.
    browser.find_element("tag name", "h1").click()  # the focus starts from the top
    order = []
    for _ in range(20):
        ActionChains(browser).send_keys(Keys.TAB).perform()
        order.append(browser.switch_to.active_element.get_attribute("id"))
    assert "key-input" in order and "pick-files" in order
    assert order.index("key-input") < order.index("option-mode") < order.index("pick-files")
    browser.find_element("id", "key-input").click()
    ActionChains(browser).send_keys(key, Keys.ENTER).perform()
    assert browser.find_element("id", "key-set").is_displayed()

    # A photo dropped on the page (a drop event carrying a file, as a desktop drop makes one).
    data = list(photos["chelsea.webp"].read_bytes())
    browser.execute_script("""
        const transfer = new DataTransfer();
        const bytes = new Uint8Array(arguments[0]);
        transfer.items.add(new File([bytes], "cat.webp", {type: "image/webp"}));
        const drop = document.getElementById("drop");
        for (const type of ["dragenter", "dragover", "drop"]) {
          const init = {bubbles: true, cancelable: true, dataTransfer: transfer};
          drop.dispatchEvent(new DragEvent(type, init));
        }
    """, data)
    wait_for(browser, lambda: count(browser, "done") == 1, "the dropped photo's cut-out")
    link = cards(browser)[0].find_element("css selector", ".download")
    assert link.get_attribute("download") == "cat.webp" and link.get_attribute("href")
    # Nothing wider than the screen: no sideways scrolling on a phone.
    assert browser.execute_script(
        "return document.documentElement.scrollWidth <= window.innerWidth")
    for element_id in ("pick-files", "download-all"):
        box = browser.find_element("id", element_id).rect
        assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE[0]
    assert balance(store, key) == 1
    browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def test_a_folder_with_the_options_chosen(browser, served, store, photos, downloads):
    from selenium.webdriver.support.select import Select

    shoot = photos["coffee.png"].parent.parent / "shoot"
    (shoot / "day two").mkdir(parents=True)
    (shoot / "coffee.png").write_bytes(photos["coffee.png"].read_bytes())
    (shoot / "day two" / "rocket.jpg").write_bytes(photos["rocket.jpg"].read_bytes())
    (shoot / "notes.txt").write_text("not a photo")
    (shoot / ".DS_Store").write_bytes(b"\0")
    key = store.create("folder@example.com", 5)
    open_page(browser, served)
    enter_key(browser, key)
    Select(browser.find_element("id", "option-outputFormat")).select_by_value("png")
    Select(browser.find_element("id", "option-mode")).select_by_value("fast")
    # The folder picker takes the folder's photos only, with their paths in it.
    browser.find_element("id", "folder").send_keys(str(shoot))
    wait_for(browser, lambda: count(browser, "done") == 2, "the folder's two cut-outs")
    names = sorted(card.find_element("css selector", ".name").text for card in cards(browser))
    assert names == ["shoot/coffee.png", "shoot/day two/rocket.jpg"]
    browser.find_element("id", "download-all").click()
    with zipfile.ZipFile(io.BytesIO(downloaded(downloads, "cutouts.zip"))) as archive:
        assert sorted(archive.namelist()) == ["shoot/coffee.png", "shoot/day two/rocket.png"]
        for name in archive.namelist():
            assert assert_cutout(archive.read(name)) == "PNG"
    assert balance(store, key) == 3
    # The choices are remembered for the next visit.
    browser.get(served + "/")
    wait_for(browser, lambda: browser.find_elements("id", "option-mode"), "the options")
    assert Select(browser.find_element("id", "option-outputFormat")).first_selected_option.text \
        == "png"
