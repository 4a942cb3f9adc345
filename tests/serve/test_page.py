"""The page at / in a real headless browser (Debian's chromium + chromedriver through selenium):
upload an image, the overlay, the legend and the estimated quality appear, the console stays clean;
the overlay switches to the error map; several images at once are listed worst first, each with
its suggested mask to download.

Nothing is downloaded at run time: selenium gets both binaries' paths and SE_OFFLINE. Without a
browser the test skips, saying what to install; `.ci/run` installs one and sets
SEGCLI_REQUIRE_BROWSER=1, so there a missing browser fails instead. SEGCLI_SCREENSHOT=PATH keeps
the screenshot (docs/serve-page.png is made this way).
"""

from __future__ import annotations

import base64
import os
import shutil
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.serve.conftest import LiveServer, crops, need_serve_extra, predicted

need_serve_extra()

BROWSER_FLAGS = ("--headless=new", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-dev-shm-usage", "--window-size=1200,760")


def _binary(name: str, *candidates: str) -> str | None:
    return shutil.which(name) or next((c for c in candidates if os.access(c, os.X_OK)), None)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    chromium = _binary("chromium", "/usr/bin/chromium", "/usr/bin/chromium-browser")
    driver_path = _binary("chromedriver", "/usr/bin/chromedriver")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        webdriver = None
    if webdriver is None or not chromium or not driver_path:
        missing = "selenium (pip install -e '.[dev]')" if webdriver is None else \
            "chromium and chromedriver (apt-get install chromium chromium-driver)"
        if os.environ.get("SEGCLI_REQUIRE_BROWSER"):
            pytest.fail(f"browser test required (SEGCLI_REQUIRE_BROWSER) but {missing} is missing")
        pytest.skip(f"no headless browser: install {missing}")
    os.environ["SE_OFFLINE"] = "true"  # selenium manager must not download a driver
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for flag in (*BROWSER_FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        opts.add_argument(flag)
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        opts.add_argument("--no-sandbox")  # chromium refuses to run as root with its sandbox
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=opts, service=Service(executable_path=driver_path))
    try:
        yield driver
    finally:
        driver.quit()


def test_upload_shows_the_overlay_and_legend_without_console_errors(browser: Any, pt_server: LiveServer,
                                                                    fitted_multi: Path, multiclass_data: Path,
                                                                    tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    img = crops(multiclass_data / "val" / "images", tmp_path, (40, 56), 1)[0]
    predicted(fitted_multi, img, tmp_path / "want.png", "--overlay", "--quality")  # the page asks for the estimate
    model = __import__("httpx").get(pt_server.url + "/model").json()
    browser.get(pt_server.url + "/")
    WebDriverWait(browser, 30).until(lambda d: "classes" in d.find_element(By.ID, "model").text)
    browser.find_element(By.ID, "file").send_keys(str(img))
    WebDriverWait(browser, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".card[data-state=done], .card[data-state=error]"))
    card = browser.find_element(By.CSS_SELECTOR, ".card")
    assert card.get_attribute("data-state") == "done", card.text
    overlay = card.find_element(By.CSS_SELECTOR, "img.overlay")
    WebDriverWait(browser, 10).until(lambda d: d.execute_script("return arguments[0].complete", overlay))
    size = browser.execute_script("return [arguments[0].naturalWidth, arguments[0].naturalHeight]", overlay)
    assert size == [56, 40]
    src = overlay.get_attribute("src")
    assert base64.b64decode(src.split(",", 1)[1]) == (tmp_path / "want_overlay.png").read_bytes()
    shown = browser.execute_script("return arguments[0].naturalWidth", card.find_element(By.CSS_SELECTOR, "img.input"))
    assert shown == 56  # the uploaded image beside the overlay
    rows = card.find_elements(By.CSS_SELECTOR, "table.legend tbody tr")
    assert len(rows) == len(model["classes"])
    assert [r.find_elements(By.TAG_NAME, "td")[1].text.split(" (")[0] for r in rows] == model["classes"]
    shares = [float(r.find_element(By.CSS_SELECTOR, "td.share").text.rstrip(" %")) for r in rows]
    assert abs(sum(shares) - 100) < 0.5 and sum(s > 0 for s in shares) > 1
    assert not browser.find_element(By.ID, "ranking").is_displayed()  # one image: no ranking
    _console_is_clean(browser)


def _console_is_clean(browser: Any) -> None:
    problems = [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
    assert not problems, problems


def _data(url: str) -> bytes:
    assert url.startswith("data:image/png;base64,"), url[:40]
    return base64.b64decode(url.split(",", 1)[1])


def test_several_images_ranked_worst_first_with_error_maps_and_masks(browser: Any, pt_server: LiveServer,
                                                                      fitted_multi: Path, multiclass_data: Path,
                                                                      tmp_path: Path) -> None:
    import json

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from tests.conftest import run_cli

    images = crops(multiclass_data / "train" / "images", tmp_path, (40, 56), 4)
    r = run_cli(["predict", *images, "--quality", "--json", "-o", tmp_path / "want"], cwd=fitted_multi)
    assert r.code == 0, r.err
    want = {Path(d["input"]).name: d for d in map(json.loads, r.out.strip().splitlines())}
    assert len({d["quality"] for d in want.values()}) > 1  # distinct estimates: the order means something
    browser.get(pt_server.url + "/")
    WebDriverWait(browser, 30).until(lambda d: "estimates mIoU" in d.find_element(By.ID, "model").text)
    browser.find_element(By.ID, "file").send_keys("\n".join(str(p) for p in images[::-1]))  # dropped at once
    WebDriverWait(browser, 60).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".card[data-state=done], "
                                                                                    ".card[data-state=error]")) == 4)
    cards = browser.find_elements(By.CSS_SELECTOR, ".card")
    assert all(c.get_attribute("data-state") == "done" for c in cards), [c.text for c in cards]
    for card in cards:
        name = card.find_element(By.CSS_SELECTOR, "h2 span").text
        assert f"estimated mIoU {want[name]['quality']:.3f}" in card.find_element(By.CSS_SELECTOR, ".quality").text
    # the ranking: worst estimate first, each row with predict's mask to download
    WebDriverWait(browser, 10).until(lambda d: "(4 done)" in d.find_element(By.ID, "ranking").text)
    rows = browser.find_elements(By.CSS_SELECTOR, "#ranking tbody tr")
    names = [row.find_elements(By.TAG_NAME, "td")[1].text for row in rows]
    assert names == sorted(want, key=lambda n: want[n]["quality"])
    assert names != [p.name for p in images[::-1]] or len(set(names)) < 2  # reordered, not the upload order
    for row, name in zip(rows, names):
        link = row.find_element(By.CSS_SELECTOR, "a.download")
        assert link.get_attribute("download") == Path(name).stem + "_mask.png"
        assert _data(link.get_attribute("href")) == Path(want[name]["output"]).read_bytes()
    # the overlay switches to the error map and back
    card = cards[0]
    name = card.find_element(By.CSS_SELECTOR, "h2 span").text
    shown = card.find_element(By.CSS_SELECTOR, "img.overlay")
    overlay_src = shown.get_attribute("src")
    card.find_element(By.CSS_SELECTOR, "button[data-view=error_map]").click()
    assert shown.get_attribute("data-view") == "error_map" and "error map" in shown.find_element(
        By.XPATH, "following-sibling::figcaption").text
    assert _data(shown.get_attribute("src")) == Path(want[name]["error_map"]).read_bytes()
    assert card.find_element(By.CSS_SELECTOR, "button[data-view=error_map]").get_attribute("aria-pressed") == "true"
    shot = tmp_path / "page.png"
    browser.set_window_size(1200, 1120)  # the ranking and the first card in one picture
    browser.execute_script("window.scrollTo(0, 0)")
    browser.save_screenshot(str(shot))
    if os.environ.get("SEGCLI_SCREENSHOT"):
        shutil.copyfile(shot, os.environ["SEGCLI_SCREENSHOT"])
    card.find_element(By.CSS_SELECTOR, "button[data-view=overlay]").click()
    assert shown.get_attribute("src") == overlay_src and shown.get_attribute("data-view") == "overlay"
    _console_is_clean(browser)
