"""The web page (issue 7): its files served by the real server, and the job page driven in
headless Chromium (Debian's chromium + chromedriver, through Selenium): the Pareto plot, its
tooltip, axes, filters and errors, and an export downloaded as a bundle. The screenshot goes to
the test's tmp dir and to benchmarks/results/web_job_page.png."""

from __future__ import annotations

import base64
import json
import shutil
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from nas.service._web import STATIC
from tests.nas.service.conftest import REPO, SUPERNET_TRIALS, TOKENS, Server

pytestmark = pytest.mark.parametrize("database", ["sqlite"], indirect=True)  # the page is DB-agnostic

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SHOT = REPO / "benchmarks" / "results" / "web_job_page.png"
WAIT = 30.0


def test_page_and_files_are_served(clients: dict[str, httpx.Client]) -> None:
    anon = clients["anon"]  # the page is public; the API calls it makes carry the token
    r = anon.get("/", follow_redirects=False)
    assert r.status_code == 307 and r.headers["location"] == "/ui/"
    for path in ("/ui/", "/ui/jobs/some-job"):
        r = anon.get(path)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        assert "default-src 'self'" in r.headers["content-security-policy"]
        assert '<script type="module" src="/ui/static/app.js">' in r.text
    kinds = {".js": "javascript", ".css": "text/css", ".html": "text/html"}
    files = sorted(STATIC.iterdir())
    assert {f.suffix for f in files} == set(kinds), files
    for f in files:
        r = anon.get(f"/ui/static/{f.name}")
        assert r.status_code == 200 and kinds[f.suffix] in r.headers["content-type"], f.name
        assert r.content == f.read_bytes()
    r = anon.get("/ui/static/nope.js")
    assert r.status_code == 404 and "detail" in r.json()


# ------------------------------------------------------------------------------ the browser
@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Path]]:
    """Headless Chromium whose downloads land in a fresh directory."""
    if not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()):
        pytest.skip("Chromium is not installed: apt-get install chromium chromium-driver")
    webdriver = pytest.importorskip("selenium.webdriver", reason="pip install selenium (the test extra)")
    from selenium.webdriver.chrome.service import Service

    downloads = tmp_path_factory.mktemp("downloads")
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1440,1200", "--no-first-run", "--disable-extensions"):
        opts.add_argument(arg)
    opts.add_experimental_option(
        "prefs", {"download.default_directory": str(downloads), "download.prompt_for_download": False}
    )
    # An explicit driver path: Selenium Manager never runs (it would try to download drivers).
    drv = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=opts)
    try:
        behaviour = {"behavior": "allow", "downloadPath": str(downloads)}
        drv.execute_cdp_cmd("Browser.setDownloadBehavior", behaviour)
        yield drv, downloads
    finally:
        drv.quit()


def _until(what: str, check: Callable[[], Any], timeout: float = WAIT) -> Any:
    """Poll `check` until it returns something truthy; fail naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(0.1)


def _plot(drv: Any, x: str, y: str, where: str = "") -> dict[str, Any]:
    """Wait until the plot shows x vs y under `where`; its points (number, front) and labels."""
    js = """const s = document.getElementById('plot');
        if (s.dataset.state !== 'ready') return null;
        return {x: s.dataset.x, y: s.dataset.y, where: s.dataset.where,
                points: [...s.querySelectorAll('.pt')]
                    .map(c => [Number(c.dataset.number), c.classList.contains('front')]),
                labels: [...s.querySelectorAll('text.label')].map(t => t.textContent)};"""
    def shown() -> Any:
        got = drv.execute_script(js)
        return got if got and [got["x"], got["y"], got["where"]] == [x, y, where] else None

    return _until(f"the plot of {x} vs {y} where {where!r}", shown)  # type: ignore[no-any-return]


def _expect(c: httpx.Client, jid: str, x: str, y: str, where: str = "") -> tuple[set[int], set[int]]:
    """(trial numbers with x and y, front numbers) as the API reports them."""
    q = {"where": where} if where else {}
    trials = c.get(f"/api/jobs/{jid}/trials", params=q).json()
    front = c.get(f"/api/jobs/{jid}/pareto", params={**q, "objectives": f"{x},{y}"}).json()
    with_xy = {t["number"] for t in trials if t[x] is not None and t[y] is not None}
    return with_xy, {t["number"] for t in front}


def _check_plot(drv: Any, c: httpx.Client, jid: str, x: str, y: str, where: str = "") -> dict[str, Any]:
    got = _plot(drv, x, y, where)
    numbers, front = _expect(c, jid, x, y, where)
    assert sorted(n for n, _ in got["points"]) == sorted(numbers)
    assert {n for n, on in got["points"] if on} == front and front
    assert got["labels"][0].startswith(x) and got["labels"][1].startswith(y)
    return got


def _apply_filters(drv: Any, fields: dict[str, str]) -> None:
    from selenium.webdriver.common.by import By

    for css, value in fields.items():
        box = drv.find_element(By.CSS_SELECTOR, css)
        box.clear()
        box.send_keys(value)
    drv.find_element(By.ID, "filters-apply").click()


def _hover_front_point(drv: Any) -> dict[str, Any]:
    """Hover the top-most mark at a front point's centre; its number and the tooltip's text."""
    from selenium.webdriver.common.action_chains import ActionChains

    el = drv.execute_script(
        """const c = document.querySelector('#plot .pt.front').getBoundingClientRect();
        return document.elementFromPoint(c.x + c.width / 2, c.y + c.height / 2);"""
    )
    ActionChains(drv).move_to_element(el).perform()
    tip = _until("the tooltip", lambda: drv.execute_script(
        "const t = document.getElementById('tooltip'); return t.hidden ? null : t.innerText;"))
    return {"number": int(el.get_attribute("data-number")), "tip": tip, "el": el}


def _zip_in(folder: Path) -> Path | None:
    done = [p for p in folder.glob("*.zip") if not p.with_name(p.name + ".crdownload").exists()]
    return done[0] if done and not list(folder.glob("*.crdownload")) else None


@pytest.mark.slow
def test_job_page_in_chromium(
    browser: tuple[Any, Path],
    server: Server,
    clients: dict[str, httpx.Client],
    supernet_job: dict[str, Any],
    search_job: dict[str, Any],
    tmp_path: Path,
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    drv, downloads = browser
    alice, jid = clients["alice"], supernet_job["id"]
    trials = {t["number"]: t for t in alice.get(f"/api/jobs/{jid}/trials").json()}

    # Without a token the API's 401 detail is shown; the token field stores one.
    drv.get(f"{server.base}/ui/")
    err = _until("the 401 error", lambda: drv.find_element(By.ID, "error").is_displayed()
                 and drv.find_element(By.ID, "error-text").text)
    assert "Missing bearer token" in err
    drv.find_element(By.ID, "token").send_keys(TOKENS["alice"])
    drv.find_element(By.CSS_SELECTOR, "#token-form button[type=submit]").click()
    row = f'#jobs-table tr[data-id="{jid}"]'
    listed = f"const r = document.querySelector('{row}'); return r && r.innerText;"
    want = f"/ {SUPERNET_TRIALS} trials"
    _until("the job's progress in the list", lambda: want in (drv.execute_script(listed) or ""))
    assert not drv.find_element(By.ID, "error").is_displayed()
    drv.find_element(By.CSS_SELECTOR, f"{row} a").click()

    # The plot: every trial a point, the API's front highlighted; hover shows the trial.
    _until("the job page", lambda: drv.current_url.endswith(f"/ui/jobs/{jid}"))
    _check_plot(drv, alice, jid, "accuracy", "macs")
    hovered = _hover_front_point(drv)
    t = trials[hovered["number"]]
    assert f"Trial #{t['number']}" in hovered["tip"] and t["arch_id"] in hovered["tip"]
    assert "accuracy" in hovered["tip"] and f"{t['accuracy']:.4g}" in hovered["tip"]
    assert json.dumps(t["arch"], separators=(",", ":")) in hovered["tip"]

    # Any two metrics: the plot redraws with the front over the new pair.
    Select(drv.find_element(By.ID, "x-axis")).select_by_value("params")
    _plot(drv, "params", "macs")
    Select(drv.find_element(By.ID, "y-axis")).select_by_value("activation_bytes")
    _check_plot(drv, alice, jid, "params", "activation_bytes")
    drv.find_element(By.ID, "swap").click()
    _check_plot(drv, alice, jid, "activation_bytes", "params")

    # A budget filter becomes `where`; a bad filter shows the API's detail.
    bound = sorted(t["macs"] for t in trials.values())[len(trials) // 2]
    _apply_filters(drv, {'input[name="max:macs"]': f"{bound:g}"})
    got = _check_plot(drv, alice, jid, "activation_bytes", "params", f"macs <= {bound:g}")
    assert len(got["points"]) < len(trials)
    _apply_filters(drv, {"#where-extra": "colour < 1"})
    detail = alice.get(f"/api/jobs/{jid}/trials", params={"where": f"macs <= {bound:g} and (colour < 1)"})
    assert detail.status_code == 422
    shown = _until("the filter error", lambda: drv.find_element(By.ID, "error").is_displayed()
                   and drv.find_element(By.ID, "error-text").text)
    assert detail.json()["detail"] in shown and shown.startswith("422")
    _apply_filters(drv, {'input[name="max:macs"]': "lots"})  # checked before any request
    error_text = drv.find_element(By.ID, "error-text")
    shown = _until("the budget error", lambda: "must be a number" in error_text.text and error_text.text)
    assert "max of macs" in shown and "'lots'" in shown
    drv.find_element(By.ID, "filters-reset").click()
    Select(drv.find_element(By.ID, "x-axis")).select_by_value("accuracy")
    Select(drv.find_element(By.ID, "y-axis")).select_by_value("macs")
    _check_plot(drv, alice, jid, "accuracy", "macs")
    assert not drv.find_element(By.ID, "error").is_displayed()

    # Export a front point: click selects it, the button POSTs and downloads the bundle.
    hovered = _hover_front_point(drv)
    hovered["el"].click()
    assert trials[hovered["number"]]["arch_id"] in drv.find_element(By.ID, "selected").text
    drv.find_element(By.CSS_SELECTOR, 'input[name="format"][value="onnx"]').click()  # torch only: fast
    drv.find_element(By.ID, "export").click()
    bundle = _until("the downloaded bundle", lambda: _zip_in(downloads), timeout=120)
    assert bundle.name.startswith(f"{jid}-{hovered['number']}-")
    with zipfile.ZipFile(bundle) as zf:
        manifest = next(n for n in zf.namelist() if n.endswith("/manifest.json"))
        assert json.loads(zf.read(manifest))["arch_id"] == trials[hovered["number"]]["arch_id"]
    status = _until("the export status", lambda: drv.execute_script(
        "const s = document.getElementById('export-status');"
        "return s.dataset.state === 'done' && s.textContent;"))
    assert bundle.name in status

    # The screenshot, whole page, with a point hovered.
    _hover_front_point(drv)
    shot = tmp_path / "web_job_page.png"
    png = drv.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
    shot.write_bytes(base64.b64decode(png["data"]))
    assert shot.read_bytes().startswith(b"\x89PNG") and shot.stat().st_size > 10_000
    SHOT.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shot, SHOT)

    # A table job: the device filter (its latency is measured on local-cpu), no export.
    sid = search_job["id"]
    drv.get(f"{server.base}/ui/jobs/{sid}")
    _check_plot(drv, alice, sid, "accuracy", "latency_ms@local-cpu")
    assert Select(drv.find_element(By.ID, "device")).first_selected_option.text == "local-cpu"
    lat = sorted(t["latency_ms@local-cpu"] for t in alice.get(f"/api/jobs/{sid}/trials").json())
    cap = f"{lat[len(lat) // 2]:.6g}"
    _apply_filters(drv, {'input[name="max:latency_ms@local-cpu"]': cap})
    _check_plot(drv, alice, sid, "accuracy", "latency_ms@local-cpu", f"latency_ms@local-cpu <= {cap}")
    drv.find_element(By.CSS_SELECTOR, "#plot .pt").click()
    assert not drv.find_element(By.ID, "export-box").is_displayed()
    assert "supernet" in drv.find_element(By.ID, "export-none").text


@pytest.mark.slow
def test_job_page_follows_a_running_job(
    browser: tuple[Any, Path],
    server: Server,
    clients: dict[str, httpx.Client],
    make_spec: Callable[..., dict[str, Any]],
) -> None:
    """Opened while the job is pending or running, the page polls it to the end: status,
    progress, plot and hypervolume update without a reload."""
    drv, _ = browser
    alice = clients["alice"]
    r = alice.post("/api/jobs/search", json=make_spec(trials=30, name="web-live"))
    assert r.status_code == 201, r.text
    jid = r.json()["id"]
    drv.get(f"{server.base}/ui/")
    drv.execute_script("localStorage.setItem('hwnas.token', arguments[0])", TOKENS["alice"])
    drv.get(f"{server.base}/ui/jobs/{jid}")
    seen = _until("the job to finish on the page", lambda: drv.execute_script(
        "const s = document.getElementById('job-status').dataset.seen || '';"
        "return s.includes('finished') && s;"),
        timeout=120)
    assert "pending" in seen or "running" in seen, seen
    _check_plot(drv, alice, jid, "accuracy", "latency_ms@local-cpu")
    progress = drv.execute_script("return document.getElementById('job-progress').textContent")
    assert progress == "30 / 30 trials"
    assert int(drv.execute_script("return document.getElementById('hv').dataset.points")) > 0
