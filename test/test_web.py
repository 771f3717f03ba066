"""fastsam_web (issue 21): the page in a real headless Chromium selects what it is tapped on, asks no other host,
refuses bad requests with a 4xx and a log line, and refuses to listen off loopback without a token.

The node runs with the fake engine (painted scenes, exact masks) and the web node in its own process, as
``fastsam.launch.py web:=true`` starts it. The browser tests need Debian's ``chromium`` and playwright (PyPI).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from ros_harness import FAKE_NODE, Probe, load_launch_module, running_node, wait_until

pytest.importorskip("aiohttp", reason="fastsam_web needs aiohttp (requirements/ml.txt)")

from fastsam_ros.ros.web_server import BadPrompt, WebSettings, check_binding, parse_prompt

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
SHAPE = (240, 320)
PERSON = (slice(60, 200), slice(40, 110))  # the object tapped (red)
CUP = (slice(100, 160), slice(200, 280))  # another (green)
RED, GREEN = (0, 0, 200), (0, 200, 0)  # BGR


def scene() -> np.ndarray:
    frame = np.zeros((*SHAPE, 3), dtype=np.uint8)
    frame[PERSON] = RED
    frame[CUP] = GREEN
    return frame


def region(where: tuple[slice, slice]) -> np.ndarray:
    mask = np.zeros(SHAPE, dtype=bool)
    mask[where] = True
    return mask


def centre(where: tuple[slice, slice]) -> tuple[float, float]:
    return ((where[1].start + where[1].stop) / 2, (where[0].start + where[0].stop) / 2)


def web_command(*parameters: str, namespace: str = "web") -> list[str]:
    args = [sys.executable, "-m", "fastsam_ros.ros.web_node", "--ros-args", "-r", f"__ns:=/{namespace}"]
    for parameter in parameters:
        args += ["-p", parameter]
    return args


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_off_loopback_without_a_token_the_web_node_refuses_to_start_and_says_why() -> None:
    with pytest.raises(ValueError, match="without a token"):
        check_binding(WebSettings(host="0.0.0.0"))
    check_binding(WebSettings(host="0.0.0.0", token="s3cret"))
    check_binding(WebSettings(host="::1"))
    done = subprocess.run(web_command("host:=0.0.0.0", f"port:={free_port()}"), capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 2, done.stdout + done.stderr
    assert "refusing to serve the web page on '0.0.0.0' without a token" in done.stderr + done.stdout


@pytest.mark.parametrize("data", [[], {"points": [[1, 2]]}, {"points": [[1, 2, 5]]}, {"points": [["a", 2, 1]]},
                                  {"points": [[float("nan"), 2, 1]]}, {"boxes": [[1, 2, 3]]}, {}, {"text": " "},
                                  {"follow": "yes", "text": "cup"}, {"points": [[1, 2, 1]], "evil": 1}])
def test_a_malformed_page_prompt_is_refused(data: object) -> None:
    with pytest.raises(BadPrompt):
        parse_prompt(data)


def test_page_prompts_keep_points_labels_boxes_text_and_follow() -> None:
    prompt = parse_prompt({"points": [[10, 20.5, 1], [3, 4, 0]], "follow": False})
    assert prompt.points == ((10.0, 20.5), (3.0, 4.0)) and prompt.labels == (1, 0) and not prompt.follow
    assert parse_prompt({"boxes": [[1, 2, 30, 40]]}).boxes == ((1.0, 2.0, 30.0, 40.0),)
    assert parse_prompt({"text": " a cup "}).text == "a cup"
    assert parse_prompt({"clear": True}).clear


def test_the_launch_file_starts_the_web_node_beside_the_node_in_its_namespace() -> None:
    launch = load_launch_module()
    assert launch.LAUNCH_ARGUMENTS["web"][0] == "false" and "web" not in launch.NODE_ARGUMENTS
    spec = launch.web_spec("8090", "fastsam")
    assert (spec["executable"], spec["namespace"], spec["parameters"]) == ("fastsam_web", "fastsam", [{"port": 8090}])


# ---------------------------------------------------------------------------------------------- the live page


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Probe, Path]]:
    """The fake-engine node under /web, a camera publishing the scene at 10 Hz, and fastsam_web on a free port."""
    logs = tmp_path_factory.mktemp("web")
    port = free_port()
    with running_node(logs / "node.log", "web", program=FAKE_NODE, model="fake.pt", warmup=False) as (_, probe):
        camera_on = threading.Event()
        camera_on.set()

        def camera() -> None:
            while camera_on.is_set():
                probe.publish_image(scene(), time.time_ns())
                time.sleep(0.1)

        threading.Thread(target=camera, daemon=True).start()
        web_log = logs / "web.log"
        with open(web_log, "w") as log:
            web = subprocess.Popen(web_command(f"port:={port}"), stdout=log, stderr=subprocess.STDOUT,
                                   env={**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"})
        base = f"http://127.0.0.1:{port}/"
        try:
            assert wait_until(lambda: _status(base) == 200 or web.poll() is not None, 60), web_log.read_text()
            # The page's prompts reach the node once the web node's publisher has matched it (503 until then).
            connected = wait_until(lambda: _status(base + "prompt", b'{"clear": true}') == 204, 30)
            assert connected, web_log.read_text()
            yield base, probe, web_log
        finally:
            camera_on.clear()
            web.send_signal(signal.SIGINT)
            assert web.wait(timeout=20) == 0, web_log.read_text()


def _status(url: str, data: bytes | None = None) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return 0


def test_a_prompt_nobody_would_hear_is_refused_with_503_not_lost(tmp_path: Path) -> None:
    port = free_port()
    with open(tmp_path / "web.log", "w") as log:
        web = subprocess.Popen(web_command(f"port:={port}", namespace="lonely"), stdout=log, stderr=subprocess.STDOUT,
                               env={**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"})
    base = f"http://127.0.0.1:{port}/"
    try:
        up = wait_until(lambda: _status(base) == 200 or web.poll() is not None, 60)
        assert up, (tmp_path / "web.log").read_text()
        assert _status(base + "prompt", json.dumps({"points": [[10, 20, 1]]}).encode()) == 503
    finally:
        web.send_signal(signal.SIGINT)
        assert web.wait(timeout=20) == 0


def test_ctrl_c_repeated_by_ros2_launch_while_the_web_node_stops_still_exits_0(tmp_path: Path) -> None:
    """``ros2 launch`` forwards the terminal's Ctrl-C a moment after the process group got it."""
    port = free_port()
    with open(tmp_path / "web.log", "w") as log:
        web = subprocess.Popen(web_command(f"port:={port}", namespace="twice"), stdout=log, stderr=subprocess.STDOUT,
                               env={**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"})
    try:
        up = wait_until(lambda: _status(f"http://127.0.0.1:{port}/") == 200 or web.poll() is not None, 60)
        assert up, (tmp_path / "web.log").read_text()
        repeats_until = time.monotonic() + 0.4
        while web.poll() is None and time.monotonic() < repeats_until:
            web.send_signal(signal.SIGINT)
            time.sleep(0.005)
        assert web.wait(timeout=20) == 0, (tmp_path / "web.log").read_text()
    finally:
        if web.poll() is None:
            web.kill()


def test_a_bad_request_gets_a_4xx_and_a_log_line(live) -> None:
    base, _, web_log = live
    assert _status(base + "prompt", b"{not json") == 400
    assert _status(base + "prompt", json.dumps({"points": [[1, 2, 7]]}).encode()) == 400
    assert _status(base + "../etc/passwd") == 404
    assert _status(base + "stream") == 400  # a plain GET where a WebSocket is expected
    assert wait_until(lambda: "POST /prompt: 400 not JSON" in web_log.read_text(), 5), web_log.read_text()
    assert "Traceback" not in web_log.read_text()


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip("headless Chromium is not installed: `apt-get install chromium` (Debian's package) for this test")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is missing: pip install -r "
                                   "requirements/dev.txt (and Debian's `chromium` package)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield browser
        browser.close()


def client_point(page, pixel: tuple[float, float]) -> tuple[float, float]:
    """Where image pixel ``pixel`` is on the page (the picture is letterboxed by object-fit: contain), read while a
    picture is decoded (its natural size is 0 for a moment each time the next frame replaces it)."""
    def read() -> tuple[float, float] | None:
        point = page.evaluate("""([x, y]) => {
            const live = document.getElementById("live"), r = live.getBoundingClientRect();
            if (!live.naturalWidth) return null;
            const s = Math.min(r.width / live.naturalWidth, r.height / live.naturalHeight);
            return [r.left + (r.width - live.naturalWidth * s) / 2 + (x + 0.5) * s,
                    r.top + (r.height - live.naturalHeight * s) / 2 + (y + 0.5) * s];
        }""", list(pixel))
        return tuple(point) if point else None

    point = wait_until(read, 5)
    assert point is not None, "the page never showed a picture"
    return point


def selected(probe: Probe, after: int, target: tuple[slice, slice], timeout: float = 10.0):
    """The first ok answer to ``click`` with exactly ``target``'s mask after the first ``after`` answers (a followed
    object's answer on a frame already in flight may come before)."""
    from fastsam_ros.ros.conversions import mask_from_msg

    return probe.wait_for("selection", lambda m: m.prompt_id == "click" and m.status == "ok"
                          and probe.messages("selection").index(m) >= after
                          and np.array_equal(mask_from_msg(m.objects[0].mask, SHAPE), region(target)), timeout)


def test_a_tap_on_an_object_in_the_live_picture_selects_it_on_a_phone_and_asks_no_other_host(live, browser) -> None:
    base, probe, _ = live
    context = browser.new_context(viewport={"width": 390, "height": 844}, has_touch=True, is_mobile=True,
                                  bypass_csp=True)  # the page's CSP forbids eval, which wait_for_function uses
    page = context.new_page()
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(base)
    page.wait_for_function("document.getElementById('live').naturalWidth > 0", timeout=20_000)
    assert page.evaluate("[live.naturalWidth, live.naturalHeight]") == [SHAPE[1], SHAPE[0]]

    shown_ms = []
    for target in (PERSON, CUP, PERSON, CUP, PERSON):  # each tap selects another object: a new answer to show
        before = len(probe.messages("selection"))
        clicks = page.evaluate("window.fastsamLatency.length")
        page.touchscreen.tap(*client_point(page, centre(target)))
        answer = selected(probe, before, target)
        clicks_seen = [(m.status, m.reason) for m in probe.messages("selection")[before:] if m.prompt_id == "click"]
        assert answer is not None, (f"a tap on an object did not select exactly that object on `selection`: "
                                    f"{clicks_seen}, page: {page.inner_text('#status')}")
        assert answer.objects[0].track_id > 0, "a tap follows its object"
        page.wait_for_function(f"window.fastsamLatency.length > {clicks}", timeout=10_000)
        shown_ms.append(page.evaluate("window.fastsamLatency.at(-1)"))
    print(f"\nclick-to-overlay over loopback (fake engine), ms: shown median "
          f"{statistics.median(s['shown_ms'] for s in shown_ms):.0f} (all {[round(s['shown_ms']) for s in shown_ms]}),"
          f" answer median {statistics.median(s['answer_ms'] for s in shown_ms):.0f}, "
          f"POST round trip median {statistics.median(s['post_ms'] for s in shown_ms):.1f}")
    assert "ok" in page.inner_text("#status") and "track" in page.inner_text("#status")
    (REPO / "out").mkdir(exist_ok=True)
    page.screenshot(path=str(REPO / "out" / "web.png"))
    outside = [url for url in requested if not url.startswith(base) and not url.startswith("blob:")]
    assert not outside, f"the page asked other hosts: {outside}"
    context.close()


def test_a_drag_draws_a_box_that_selects_the_object_inside_and_clear_ends_the_following(live, browser) -> None:
    base, probe, _ = live
    page = browser.new_page(viewport={"width": 1280, "height": 1000}, bypass_csp=True)
    page.goto(base)
    page.wait_for_function("document.getElementById('live').naturalWidth > 0", timeout=20_000)
    page.click("#clear")  # the earlier tap's click stops following
    time.sleep(0.5)
    before = len(probe.messages("selection"))
    page.mouse.move(*client_point(page, (CUP[1].start - 5, CUP[0].start - 5)))
    page.mouse.down()
    page.mouse.move(*client_point(page, (CUP[1].stop + 5, CUP[0].stop + 5)), steps=5)
    page.mouse.up()
    assert selected(probe, before, CUP) is not None, "a box around the cup selects exactly the cup"
    page.click("#clear")
    time.sleep(0.5)
    cleared = len(probe.messages("selection"))
    time.sleep(0.5)  # five frames: a followed click would be answered on each
    assert not [m for m in probe.messages("selection")[cleared:] if m.prompt_id == "click"]
    page.close()


@pytest.mark.parametrize("gesture", ["shift-click", "long press"])
def test_a_background_point_from_the_page_vetoes_the_object_it_lies_on(live, browser, gesture: str) -> None:
    """A tap selects the person; the same spot as a background point (shift-click, or a long press on a touch
    screen) then vetoes every mask holding it: the answer is no_match."""
    base, probe, _ = live
    page = browser.new_page(viewport={"width": 1280, "height": 1000}, bypass_csp=True)
    page.goto(base)
    page.wait_for_function("document.getElementById('live').naturalWidth > 0", timeout=20_000)
    page.click("#clear")
    time.sleep(0.5)
    before = len(probe.messages("selection"))
    page.mouse.click(*client_point(page, centre(PERSON)))
    assert selected(probe, before, PERSON) is not None
    before = len(probe.messages("selection"))
    page.mouse.move(*client_point(page, centre(PERSON)))
    if gesture == "shift-click":
        page.keyboard.down("Shift")
        page.mouse.down()
        page.mouse.up()
        page.keyboard.up("Shift")
    else:
        page.mouse.down()
        time.sleep(0.7)  # the page's long press: 500 ms
        page.mouse.up()
    vetoed = wait_until(lambda: next((m for m in probe.messages("selection")[before:]
                                      if m.prompt_id == "click" and m.status == "no_match"), None), 10)
    assert vetoed is not None, [(m.prompt_id, m.status) for m in probe.messages("selection")[before:]]
    page.close()
