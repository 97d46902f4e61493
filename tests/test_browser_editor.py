"""The editor in a real browser (playwright driving Debian's chromium, headless) against a real ``main.py``:
the page loads with no console errors and no request leaving the machine, the render template loads, Run
executes it with the WebSocket events in order and the output video in the node's preview; the test pack's
template shows its image and audio previews; the workflow saved from the editor comes back through userdata
and runs headless with ``main.py run`` (the editor -> API conversion).

Screenshots go to the tmp dir (or $AVATARGRAPH_SCREENSHOT_DIR); scripts/docs_screenshots.py refreshes docs/.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.test_server_support import (PYTHON, ROOT, PackInstall, ServerProcess, request, wav_bytes)

pytestmark = pytest.mark.browser
CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
RENDER_UI = ROOT / "workflows" / "render_avatar.json"


@pytest.fixture(scope="module")
def editor_server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium; see requirements/apt-server.txt)")
    pytest.importorskip("playwright")
    from PIL import Image
    from skimage import data as skimage_data

    pack = PackInstall()
    data = tmp_path_factory.mktemp("editor") / "data"
    (data / "input").mkdir(parents=True)
    Image.fromarray(skimage_data.astronaut()).save(data / "input" / "portrait.png")  # what the template names
    (data / "input" / "speech.wav").write_bytes(wav_bytes(1.0))
    proc = ServerProcess(data, pack.name)
    try:
        proc.start()
        # Legible at the zoom that fits the whole graph (for the screenshot), no minimap over the video.
        status, _ = request(proc.url, "POST", "/api/settings", {"LiteGraph.Canvas.MinFontSizeForLOD": 0,
                                                                 "Comfy.Minimap.Visible": False})
        assert status == 200
        yield proc
    finally:
        proc.stop()
        pack.remove()


class Page:
    """One browser page with what the test watches: console errors, outside requests, WebSocket frames."""

    def __init__(self, playwright: Any, base: str, tmp: Path):
        self.browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=FLAGS)
        self.context = self.browser.new_context(viewport={"width": 1600, "height": 1000})
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.outside: list[str] = []
        self.frames: list[dict[str, Any]] = []
        self.page.on("console", lambda m: self.errors.append(f"console: {m.text}") if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))
        self.page.on("request", lambda r: self.outside.append(r.url)
                     if not r.url.startswith((base, "data:", "blob:", base.replace("http", "ws"))) else None)
        self.page.on("websocket", self._watch)

    def _watch(self, ws: Any) -> None:
        def on_frame(payload: Any) -> None:
            if isinstance(payload, str):
                self.frames.append(json.loads(payload))
            else:
                self.frames.append({"type": "<binary>", "size": len(payload)})
        ws.on("framereceived", on_frame)

    def graph(self) -> list[list[Any]]:
        return self.page.evaluate("window.comfyAPI.app.app.graph.nodes.map(n => [String(n.id), n.type])")

    def load_template(self, url: str) -> None:
        self.page.select_option("#avatargraph-templates", value=url)
        self.page.click("#avatargraph-load-template")
        self.page.wait_for_timeout(800)

    def run_and_wait(self, selector: str, timeout_ms: int = 180_000) -> list[dict[str, Any]]:
        start = len(self.frames)
        self.page.get_by_role("button", name="Run").first.click()
        self.page.wait_for_selector(selector, timeout=timeout_ms, state="attached")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            new = self.frames[start:]
            if any(f["type"] == "executing" and f["data"].get("node") is None for f in new):
                return new
            self.page.wait_for_timeout(200)
        raise TimeoutError(f"no final executing message; got {[f['type'] for f in self.frames[start:]]}")

    def close(self) -> None:
        self.context.close()
        self.browser.close()


def _assert_events_in_order(frames: list[dict[str, Any]], output_node: str) -> None:
    types = [f["type"] for f in frames if f["type"] != "<binary>"]
    prompt_ids = {f["data"].get("prompt_id") for f in frames if f["type"] == "execution_start"}
    assert len(prompt_ids) == 1, types
    first = types.index("execution_start")
    executed = [i for i, f in enumerate(frames) if f["type"] == "executed" and f["data"]["node"] == output_node]
    success = types.index("execution_success")
    assert first < types.index("executing") < success, types
    assert executed and frames.index(frames[executed[0]]) < [i for i, f in enumerate(frames)
                                                             if f["type"] == "execution_success"][0]
    last = frames[-1] if frames[-1]["type"] == "executing" else next(
        f for f in reversed(frames) if f["type"] == "executing")
    assert last["data"]["node"] is None
    assert success < len(types) - 1 - types[::-1].index("executing")  # executing null comes last


def test_editor_loads_runs_templates_and_saves(editor_server: ServerProcess, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    base = editor_server.url
    info = request(base, "GET", "/api/avatargraph/info")[1]
    templates = {t["name"]: t for t in info["templates"]}
    with sync_playwright() as p:
        page = Page(p, base, tmp_path)
        try:
            began = time.monotonic()
            print("goto", flush=True)
            page.page.goto(base + "/")
            print("loaded", flush=True)
            page.page.wait_for_selector("#avatargraph-bar", timeout=120_000)
            page.page.wait_for_function("window.comfyAPI && window.comfyAPI.app.app.graph", timeout=60_000)
            page.page.wait_for_timeout(1500)
            load_seconds = time.monotonic() - began
            page.page.keyboard.press("Escape")  # the first-run template browser
            assert page.page.locator("#avatargraph-open-talk").is_visible()
            assert [f["type"] for f in page.frames][:1] == ["status"]

            print("ready", load_seconds, flush=True)
            # 1. The render template: Run, events in order, the video in the preview.
            if RENDER_UI.exists():
                template = templates.get("render_avatar")
                assert template and template["format"] == "ui", info["templates"]
                page.load_template(template["url"])
                types = {t for _, t in page.graph()}
                assert {"LoadImage", "LoadAudio", "VideoOut"} <= types, types
                out_id = next(i for i, t in page.graph() if t == "VideoOut")
                fit = "window.comfyAPI.app.app.extensionManager.command.execute('Comfy.Canvas.FitView')"
                page.page.evaluate(fit)  # the frontend makes its video player only for a node on screen
                video = "video[src*='/api/view'][src*='.mp4']"  # the frontend's own player (images + animated)
                frames = page.run_and_wait(video)
                _assert_events_in_order(frames, out_id)
                assert any(f["type"] == "progress" for f in frames)
                executed = next(f for f in frames if f["type"] == "executed" and f["data"]["node"] == out_id)
                filename = executed["data"]["output"]["images"][0]["filename"]
                assert filename in page.page.get_attribute(video, "src")
                page.page.wait_for_function(f"document.querySelector(\"{video}\").readyState >= 1", timeout=30_000)
                duration = page.page.evaluate(f"document.querySelector(\"{video}\").duration")
                assert 0.5 < duration < 2.0, duration
                assert page.page.locator(video).count() == 1  # previewed once, not once per list
                page.page.evaluate(fit)
                page.page.wait_for_timeout(1000)
                page.page.screenshot(path=str(Path(os.environ.get("AVATARGRAPH_SCREENSHOT_DIR") or tmp_path)
                                              / "editor.png"))

            print("render done", flush=True)
            # 2. The test pack's template: image and audio previews.
            page.load_template(templates["agtest_compose"]["url"])
            assert sorted(t for _, t in page.graph()) == ["AGTestCompose", "AGTestSolidImage", "AGTestTone"]
            frames = page.run_and_wait(".avatargraph-audio")
            _assert_events_in_order(frames, "3")
            assert any(f["type"] == "<binary>" for f in frames)  # the PNG preview frame
            executed = next(f for f in frames if f["type"] == "executed")
            audio_src = page.page.get_attribute(".avatargraph-audio", "src")
            assert executed["data"]["output"]["audio"][0]["filename"] in audio_src
            clip = page.page.get_attribute(".avatargraph-video", "src")  # the gifs entry: our player
            assert executed["data"]["output"]["gifs"][0]["filename"] in clip
            page.page.wait_for_function("document.querySelector('.avatargraph-video').readyState >= 1",
                                        timeout=20_000)
            page.page.wait_for_function("document.querySelector('.avatargraph-audio').duration > 0.4",
                                        timeout=20_000)
            page.page.wait_for_function("(() => { const n = window.comfyAPI.app.app.graph.getNodeById(3);"
                                        " return n.imgs && n.imgs.length > 0 && n.imgs[0].complete; })()",
                                        timeout=20_000)

            print("agtest done", flush=True)
            # 3. Save through the editor (userdata), then run the saved file headless.
            name = f"saved-{int(time.time())}"
            with page.page.expect_response(lambda r: "/api/userdata/workflows%2F" in r.url
                                           and r.request.method == "POST", timeout=30_000) as saved:
                page.page.evaluate("() => { setTimeout(() => window.comfyAPI.app.app.extensionManager.command"
                                   ".execute('Comfy.SaveWorkflow'), 0); }")  # it resolves once saved
                dialog_input = page.page.locator("[role=dialog] input").first
                dialog_input.wait_for(timeout=10_000)
                dialog_input.fill(name)
                dialog_input.press("Enter")
            assert saved.value.status == 200, saved.value.text()

            # 4. The Talk button opens the Talk page.
            with page.context.expect_page(timeout=30_000) as opened:
                page.page.click("#avatargraph-open-talk")
            talk = opened.value
            talk.wait_for_load_state("domcontentloaded", timeout=30_000)
            assert talk.url.rstrip("/").endswith("/talk"), talk.url
            talk.close()
            assert not page.errors, page.errors
            assert not page.outside, page.outside
        except BaseException:
            page.page.screenshot(path=str(tmp_path / "failure.png"))
            print(f"screenshot of the failure: {tmp_path / 'failure.png'}", flush=True)
            raise
        finally:
            page.close()

    status, listed = request(base, "GET", "/api/userdata?dir=workflows&recurse=true&split=false&full_info=true")
    assert f"{name}.json" in [e["path"] for e in listed]
    status, workflow = request(base, "GET", f"/api/userdata/workflows%2F{name}.json")
    assert status == 200 and isinstance(workflow, dict) and len(workflow["nodes"]) == 3, workflow
    saved_file = tmp_path / f"{name}.json"
    saved_file.write_text(json.dumps(workflow))
    run = subprocess.run([PYTHON, "main.py", "--data-dir", str(editor_server.data_dir), "--enable-pack",
                          editor_server.pack, "run", str(saved_file), "--quiet", "--set", "3.delay=0"],
                         cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stdout + run.stderr
    from PIL import Image

    pngs = [Path(line) for line in run.stdout.split() if line.endswith(".png")]
    assert len(pngs) == 1 and pngs[0].exists(), run.stdout
    image = np.asarray(Image.open(pngs[0]))  # the compose node's PNG of the 96x64 teal template image
    assert image.shape == (64, 96, 3) and (image[0, -1] == (0, 128, 128)).all()
    print(f"editor ready in {load_seconds:.1f}s")
