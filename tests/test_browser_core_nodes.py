"""ComfyUI's core output nodes in the real editor (playwright driving Debian's chromium against ``main.py``): a
workflow loaded from its API form shows typed text in ``PreviewAny`` and plays speech in ``PreviewAudio``
(and ``SaveAudio``). The screenshot goes to the tmp dir, or $AVATARGRAPH_SCREENSHOT_DIR (docs/ for the README).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.test_browser_editor import CHROMIUM, Page
from tests.test_server_support import ServerProcess, request, wav_bytes

TRANSCRIPT = "Hello! This is what the avatar heard, shown by Preview Any."
WORKFLOW = {
    "1": {"class_type": "PrimitiveStringMultiline", "inputs": {"value": TRANSCRIPT}, "_meta": {"title": "Transcript"}},
    "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}},
    "3": {"class_type": "LoadAudio", "inputs": {"audio": "speech.wav"}},
    "4": {"class_type": "PreviewAudio", "inputs": {"audio": ["3", 0]}},
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium; see requirements/apt-server.txt)")
    pytest.importorskip("playwright")
    data = tmp_path_factory.mktemp("core_nodes") / "data"
    (data / "input").mkdir(parents=True)
    (data / "input" / "speech.wav").write_bytes(wav_bytes(1.0))
    proc = ServerProcess(data, "none")
    try:
        proc.start()
        status, _ = request(proc.url, "POST", "/api/settings", {"LiteGraph.Canvas.MinFontSizeForLOD": 0,
                                                                "Comfy.Minimap.Visible": False})
        assert status == 200
        yield proc
    finally:
        proc.stop()


@pytest.mark.browser
def test_preview_any_shows_text_and_preview_audio_plays(server: ServerProcess, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        page = Page(p, server.url, tmp_path)
        try:
            page.page.goto(server.url + "/")
            page.page.wait_for_function("window.comfyAPI && window.comfyAPI.app.app.graph", timeout=180_000)
            page.page.wait_for_timeout(1500)
            page.page.keyboard.press("Escape")  # the first-run template browser
            page.page.evaluate(f"window.comfyAPI.app.app.loadApiJson({json.dumps(WORKFLOW)}, 'core_nodes.json')")
            page.page.wait_for_timeout(800)
            assert sorted(t for _, t in page.graph()) == ["LoadAudio", "PreviewAny", "PreviewAudio",
                                                         "PrimitiveStringMultiline"]
            page.page.evaluate("window.comfyAPI.app.app.extensionManager.command.execute('Comfy.Canvas.FitView')")
            frames = page.run_and_wait("audio[src*='type=temp']")  # LoadAudio's own player shows the input
            executed = {f["data"]["node"]: f["data"]["output"] for f in frames if f["type"] == "executed"}
            assert executed["2"] == {"text": [TRANSCRIPT]}
            player = f"audio[src*='{executed['4']['audio'][0]['filename']}']"
            page.page.wait_for_function(f"document.querySelector(\"{player}\").duration > 0.5", timeout=30_000)
            shown = page.page.evaluate("Array.from(document.querySelectorAll('textarea')).map(t => t.value)")
            assert TRANSCRIPT in shown, shown
            page.page.wait_for_timeout(500)
            page.page.screenshot(path=str(Path(os.environ.get("AVATARGRAPH_SCREENSHOT_DIR") or tmp_path)
                                          / "comfy_core_nodes.png"))
        finally:
            page.close()
