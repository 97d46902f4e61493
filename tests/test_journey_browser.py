"""A new user's first session, in headless Chromium against ``main.py`` on a fresh data dir:

1. the editor opens on our own first screen (the avatar_chat workflow, no red nodes, no "missing node packs");
2. ``say_text`` with a typed sentence renders a video that plays in the node;
3. a photo uploaded into ``render_avatar`` renders its video;
4. ``LoadAudio -> Whisper -> PreviewAny`` shows the transcript of the sample speech;
5. a run cancelled from the editor is reported as cancelled;
6. the Talk button opens the Talk page.

It fails on any console error, and on any request to a host other than this server (every such request is also
blocked, so the test proves the pages work offline). Screenshots of each step go to the tmp dir (or
$AVATARGRAPH_SCREENSHOT_DIR: ``scripts/docs_screenshots.py`` copies them into docs/).
"""

from __future__ import annotations

import io
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.test_server_support import PackInstall, ServerProcess, request

pytestmark = [pytest.mark.browser, pytest.mark.slow]
CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--autoplay-policy=no-user-gesture-required"]
SENTENCE = "Good morning! This sentence was typed in the editor a moment ago."
RUN_TIMEOUT_MS = 420_000  # a render on a busy 2-core CPU


@pytest.fixture(scope="module")
def fresh_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    pytest.importorskip("playwright")
    pack = PackInstall()
    data = tmp_path_factory.mktemp("journey") / "data"  # nothing in it: the server writes the sample inputs
    proc = ServerProcess(data, pack.name)
    try:
        proc.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            files = request(proc.url, "GET", "/api/internal/files/input")[1]
            if {"portrait.png", "speech.wav"} <= set(files):
                break
            time.sleep(0.5)
        else:
            raise AssertionError(f"the sample inputs were not written: {files}")
        yield proc
    finally:
        proc.stop()
        pack.remove()


def shots(tmp_path: Path) -> Path:
    return Path(os.environ.get("AVATARGRAPH_SCREENSHOT_DIR") or tmp_path)


class Browser:
    """One fresh browser profile; records console errors, WebSocket messages, and blocks outside requests."""

    def __init__(self, playwright: Any, base: str):
        self.base = base
        self.browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=FLAGS)
        self.context = self.browser.new_context(viewport={"width": 1600, "height": 1000})
        self.errors: list[str] = []
        self.outside: list[str] = []
        self.frames: list[dict[str, Any]] = []
        self.context.route("**/*", self._route)
        self.page = self.watch(self.context.new_page())

    def watch(self, page: Any) -> Any:
        page.on("console", lambda m: self.errors.append(f"{page.url}: console: {m.text}") if m.type == "error"
                else None)
        page.on("pageerror", lambda e: self.errors.append(f"{page.url}: page error: {e}"))
        page.on("websocket", self._websocket)
        return page

    def _route(self, route: Any) -> None:
        url = route.request.url
        host = urlsplit(url).hostname or ""
        if url.startswith(("data:", "blob:")) or host in ("127.0.0.1", "localhost", "::1"):
            route.continue_()
        else:
            self.outside.append(url)
            route.abort()

    def _websocket(self, ws: Any) -> None:
        def on_frame(payload: Any) -> None:
            if isinstance(payload, str):
                try:
                    self.frames.append(json.loads(payload))
                except ValueError:
                    pass
        ws.on("framereceived", on_frame)

    def eval(self, script: str, arg: Any = None) -> Any:
        return self.page.evaluate(script, arg)

    def node_types(self) -> list[str]:
        return self.eval("window.comfyAPI.app.app.graph.nodes.map(n => n.type)")

    def load_template(self, name: str) -> None:
        self.eval("async (name) => { const t = window.avatargraph.info.templates.find("
                  "t => t.name === name && t.format === 'ui'); await window.avatargraph.loadTemplate(t); }", name)
        self.page.wait_for_timeout(800)

    def run(self) -> int:
        start = len(self.frames)
        self.page.get_by_role("button", name="Run").first.click()
        return start

    def wait_frame(self, start: int, kind: str, timeout_s: float = RUN_TIMEOUT_MS / 1000) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for frame in self.frames[start:]:
                if frame.get("type") == kind:
                    return frame
                if frame.get("type") == "execution_error" and kind != "execution_error":
                    raise AssertionError(f"the run failed: {json.dumps(frame['data'])[:2000]}")
            self.page.wait_for_timeout(250)
        raise TimeoutError(f"no {kind} message; got {[f.get('type') for f in self.frames[start:]]}")

    def fit(self) -> None:
        self.eval("window.comfyAPI.app.app.extensionManager.command.execute('Comfy.Canvas.FitView')")
        self.page.wait_for_timeout(500)

    def video_plays(self, selector: str) -> float:
        """Start the node's video and return how far it got (s)."""
        self.page.wait_for_selector(selector, timeout=60_000, state="attached")
        self.fit()
        self.page.wait_for_function(f"document.querySelector(\"{selector}\").readyState >= 2", timeout=60_000)
        self.eval(f"document.querySelector(\"{selector}\").muted = true")
        self.eval(f"document.querySelector(\"{selector}\").play()")
        self.page.wait_for_function(f"document.querySelector(\"{selector}\").currentTime > 0.3", timeout=30_000)
        return float(self.eval(f"document.querySelector(\"{selector}\").duration"))

    def close(self) -> None:
        self.context.close()
        self.browser.close()


def _photo() -> bytes:
    """A photo the user brings: the sample portrait mirrored and slightly cropped (a different file)."""
    from PIL import Image, ImageOps
    from skimage import data

    image = ImageOps.mirror(Image.fromarray(data.astronaut())).crop((20, 0, 500, 480))
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=92)
    return buf.getvalue()


def test_new_user_journey(fresh_server: ServerProcess, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    out = shots(tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    with sync_playwright() as p:
        b = Browser(p, fresh_server.url)
        try:
            # 1. The first screen is ours.
            began = time.monotonic()
            b.page.goto(fresh_server.url + "/")
            b.page.wait_for_selector("#avatargraph-bar", timeout=120_000)
            b.page.wait_for_function("window.comfyAPI && window.comfyAPI.app.app.graph"
                                     " && window.comfyAPI.app.app.graph.nodes.length > 0", timeout=60_000)
            b.page.wait_for_timeout(2000)
            timings["editor ready"] = time.monotonic() - began
            types = b.node_types()
            assert {"MicInput", "Whisper", "LLMPersona", "TTS", "FaceAnimate", "VideoOutLive"} <= set(types), types
            assert "KSampler" not in types and "CheckpointLoaderSimple" not in types
            page_text = b.page.inner_text("body")
            for unwanted in ("Missing Node Packs", "comfyui-manager", "newer version of ComfyUI"):
                assert unwanted not in page_text, unwanted
            b.page.screenshot(path=str(out / "journey-1-first-screen.png"))

            # 2. say_text with a typed sentence: the video plays in the node.
            b.load_template("say_text")
            b.eval("(text) => { const n = window.comfyAPI.app.app.graph.nodes.find("
                   "n => n.type === 'PrimitiveStringMultiline'); n.widgets[0].value = text; }", SENTENCE)
            began = time.monotonic()
            start = b.run()
            b.wait_frame(start, "execution_success")
            video = "video[src*='/api/view'][src*='say_text']"
            duration = b.video_plays(video)
            timings["say_text run"] = time.monotonic() - began
            assert 2.0 < duration < 30.0, duration
            b.page.screenshot(path=str(out / "journey-2-say-text.png"))

            # 3. A photo of one's own into render_avatar.
            b.load_template("render_avatar")
            uploaded = b.eval("""async (bytes) => {
                const form = new FormData();
                form.append('image', new File([new Uint8Array(bytes)], 'my photo.jpg', {type: 'image/jpeg'}));
                form.append('type', 'input');
                const r = await window.comfyAPI.api.api.fetchApi('/upload/image', {method: 'POST', body: form});
                const body = await r.json();
                const node = window.comfyAPI.app.app.graph.nodes.find(n => n.type === 'LoadImage');
                const widget = node.widgets.find(w => w.name === 'image');
                if (!widget.options.values.includes(body.name)) widget.options.values.push(body.name);
                widget.value = body.name;
                widget.callback?.(body.name);
                return body;
            }""", list(_photo()))
            assert uploaded["name"].startswith("my_photo-") and uploaded["name"].endswith(".jpg"), uploaded
            began = time.monotonic()
            start = b.run()
            executed = b.wait_frame(start, "execution_success")
            assert executed["data"]["prompt_id"]
            duration = b.video_plays("video[src*='/api/view'][src*='avatar']")
            timings["render_avatar run"] = time.monotonic() - began
            assert 1.0 < duration < 30.0, duration
            b.page.screenshot(path=str(out / "journey-3-render-avatar.png"))

            # 4. LoadAudio -> Whisper -> PreviewAny: the transcript of the sample speech.
            b.eval("""async () => {
                await window.comfyAPI.app.app.loadApiJson({
                    "1": {"class_type": "LoadAudio", "inputs": {"audio": "speech.wav"}},
                    "2": {"class_type": "Whisper", "inputs": {"audio": ["1", 0]}},
                    "3": {"class_type": "PreviewAny", "inputs": {"source": ["2", 0]}}}, "transcribe");
            }""")
            b.page.wait_for_timeout(800)
            b.fit()
            began = time.monotonic()
            start = b.run()
            b.wait_frame(start, "execution_success")
            shown = next(f for f in b.frames[start:] if f.get("type") == "executed" and f["data"]["node"] == "3")
            text = json.dumps(shown["data"]["output"]).lower()
            assert "avatar" in text, text
            b.page.wait_for_function("() => [...document.querySelectorAll('textarea')].some("
                                     "t => t.value.toLowerCase().includes('avatar'))", timeout=20_000)
            timings["transcribe run"] = time.monotonic() - began
            b.page.screenshot(path=str(out / "journey-4-transcript.png"))

            # 5. Cancel a run: the editor says cancelled.
            b.load_template("say_text")
            b.eval("(text) => { const n = window.comfyAPI.app.app.graph.nodes.find("
                   "n => n.type === 'PrimitiveStringMultiline'); n.widgets[0].value = text; }", SENTENCE * 6)
            start = b.run()
            b.wait_frame(start, "execution_start", timeout_s=60)
            b.page.wait_for_timeout(1500)
            b.eval("window.comfyAPI.app.app.extensionManager.command.execute('Comfy.Interrupt')")
            interrupted = b.wait_frame(start, "execution_interrupted", timeout_s=120)
            prompt_id = interrupted["data"]["prompt_id"]
            job = request(fresh_server.url, "GET", f"/api/jobs/{prompt_id}")[1]
            assert job["status"] == "cancelled", job
            # ComfyUI's job list shows a cancelled job as "Failed" (its own mapping); our extension says "Cancelled".
            b.page.get_by_text("Cancelled", exact=True).first.wait_for(timeout=20_000)
            b.page.screenshot(path=str(out / "journey-5-cancelled.png"))

            # 6. The Talk page.
            with b.context.expect_page(timeout=30_000) as opened:
                b.page.click("#avatargraph-open-talk")
            talk = b.watch(opened.value)
            talk.wait_for_load_state("networkidle", timeout=30_000)
            talk.wait_for_function("document.querySelectorAll('select').length >= 4", timeout=30_000)
            talk.screenshot(path=str(out / "journey-6-talk.png"))
            talk.close()

            assert not b.outside, f"requests to other hosts: {b.outside}"
            assert not b.errors, b.errors
        except BaseException:
            b.page.screenshot(path=str(tmp_path / "journey-failure.png"))
            print(f"\nfailure screenshot: {tmp_path / 'journey-failure.png'}; console: {b.errors[-10:]}")
            raise
        finally:
            b.close()
    print("\njourney timings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
