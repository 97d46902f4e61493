"""Browser end-to-end test of the Talk page: Debian chromium (headless, through playwright) with a fake microphone
playing a WAV, the built page from ui/talk/dist, the Talk WebSocket and a live session.

* ``test_talk_page_with_test_doubles``: the page mechanics (mic capture, transcript, A/V playback, latency
  readout) with the fast test-double nodes; the fake mic plays a 440 Hz tone which the ASR double hears as
  "hello".
* ``test_talk_page_real_stack``: the default stack (workflows/avatar_chat: Silero VAD, Whisper, the LLM persona,
  TTS and the face animator): an espeak-ng utterance must be transcribed correctly and answered with audio and
  frames; it measures end of speech -> first played frame and first audio sample in the page, and saves
  talk.png (and talk-phone.png, the same page on a phone-sized screen) in its tmp dir, or in
  $AVATARGRAPH_SCREENSHOT_DIR when set (``scripts/docs_screenshots.py`` sets it and copies them to docs/).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.test_live_doubles import double_registry, double_workflow, tone
from tests.test_talk_harness import TalkClient, serve_talk

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "ui" / "talk" / "dist" / "index.html"


def screenshot_dir(tmp_path: Path) -> Path:
    """Where a test saves its screenshots: never docs/ (scripts/docs_screenshots.py copies them there)."""
    return Path(os.environ.get("AVATARGRAPH_SCREENSHOT_DIR") or tmp_path)


def chromium_args(wav: Path) -> list[str]:
    return ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream", f"--use-file-for-fake-audio-capture={wav}",
            "--autoplay-policy=no-user-gesture-required"]


def write_wav(path: Path, samples: np.ndarray, rate: int) -> None:
    import soundfile

    soundfile.write(path, samples.astype(np.float32), rate, subtype="PCM_16")


def speech_wav(tmp: Path, text: str, voice: str, lead_s: float = 1.0, tail_s: float = 40.0) -> Path:
    """An espeak-ng utterance with silence around it (the fake mic loops the file: the tail keeps it quiet)."""
    import soundfile

    raw = tmp / "espeak.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-s", "150", "-w", str(raw), text], check=True)
    samples, rate = soundfile.read(raw, dtype="float32")
    out = tmp / "speech.wav"
    write_wav(out, np.concatenate([np.zeros(int(lead_s * rate), np.float32), samples,
                                   np.zeros(int(tail_s * rate), np.float32)]), rate)
    return out


async def run_page(url: str, wav: Path, workflow: str, until_turn_played: int = 1, timeout_s: float = 120.0,
                   screenshot: Path | None = None, viewport: dict[str, int] | None = None,
                   language: str | None = None) -> dict[str, Any]:
    """Open the Talk page (choosing ``language`` under "I speak" when given), press Start, wait until turn
    ``until_turn_played`` has played; what the page saw."""
    from playwright.async_api import async_playwright

    received: list[dict[str, Any]] = []
    sent: list[dict[str, Any]] = []
    media = {"frames": 0, "audio": 0}
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=chromium_args(wav))
        try:
            page = await browser.new_page(viewport=viewport or {"width": 1200, "height": 800})
            console: list[str] = []
            page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))

            def on_ws(ws: Any) -> None:
                def got(payload: Any) -> None:
                    if isinstance(payload, str):
                        received.append({**json.loads(payload), "_at": time.time() * 1000})
                    elif payload[:1] == b"\x01":
                        media["frames"] += 1
                    elif payload[:1] == b"\x02":
                        media["audio"] += 1

                def put(payload: Any) -> None:
                    if isinstance(payload, str):
                        sent.append(json.loads(payload))
                ws.on("framereceived", got)
                ws.on("framesent", put)
            page.on("websocket", on_ws)
            await page.goto(f"{url}/talk/?raw=1")
            await page.wait_for_function("document.querySelectorAll('select').length >= 4", timeout=20000)
            await page.select_option("select[aria-label=workflow]", workflow)
            if language is not None:
                await page.select_option("select[aria-label=language]", language)
            await page.click("[data-testid=connect]")
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                played = [m for m in sent if m.get("type") == "played" and m.get("turn") == until_turn_played]
                if {k for m in played for k in m} >= {"first_audio_played", "first_frame_played"}:
                    break
                if any(m.get("type") == "error" for m in received):
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.6)  # mid-reply: the screenshot shows her speaking
            if screenshot is not None:
                screenshot.parent.mkdir(parents=True, exist_ok=True)
                await page.screenshot(path=str(screenshot))
            await asyncio.sleep(1.0)
            transcript = await page.inner_text("[data-testid=transcript]")
            latency_text = await page.inner_text("[data-testid=latency]")
            pixels = await page.evaluate("""() => {
                const c = document.querySelector('[data-testid=avatar]');
                const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                let s = 0; for (let i = 0; i < d.length; i += 4) s += d[i] + d[i + 1] + d[i + 2];
                return s / (d.length / 4) / 3;
            }""")
            if screenshot is not None:
                await page.set_viewport_size({"width": 390, "height": 844})  # a phone
                await asyncio.sleep(0.5)
                await page.screenshot(path=str(screenshot.with_name(screenshot.stem + "-phone.png")), full_page=True)
        finally:
            await browser.close()
    stamps: dict[int, dict[str, float]] = {}
    for m in received:
        if m.get("type") == "latency":
            stamps.setdefault(m["turn"], {}).update(m["stamps"])
    for m in sent:
        if m.get("type") == "played":
            stamps.setdefault(m["turn"], {}).update({k: v for k, v in m.items() if k.endswith("_played")})
    return {"received": received, "sent": sent, "media": media, "stamps": stamps, "transcript": transcript,
            "latency_text": latency_text, "canvas_mean": pixels, "console": console}


def _need_browser() -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium is not installed (apt-get install chromium)")
    if not PAGE.is_file():
        pytest.skip("ui/talk/dist is not built (cd ui/talk && npm ci && npm run build)")
    pytest.importorskip("playwright")


async def test_talk_page_with_test_doubles(tmp_path, monkeypatch):
    _need_browser()
    wav = tmp_path / "tone.wav"
    write_wav(wav, np.concatenate([np.zeros(16000, np.float32), tone(440, 0.8), np.zeros(16000 * 40, np.float32)]),
              16000)
    async with serve_talk(tmp_path, double_registry(), {"double_chat": double_workflow()}, monkeypatch) as srv:
        seen = await run_page(srv.url, wav, "double_chat", timeout_s=30)
    users = [m for m in seen["received"] if m.get("type") == "transcript" and m["role"] == "user" and m["final"]]
    assert users and users[0]["text"] == "hello", (seen["received"][-5:], seen["console"][-5:])
    assert "you:hello" in seen["transcript"].replace(" ", "")
    assert seen["media"]["frames"] > 10 and seen["media"]["audio"] > 10
    turn = seen["stamps"][1]
    assert turn["first_frame_played"] >= turn["first_frame_sent"] - 50
    assert turn["first_audio_played"] >= turn["end_of_speech"]
    assert seen["canvas_mean"] > 5  # something was drawn


@pytest.mark.slow
async def test_talk_page_real_stack(tmp_path, monkeypatch):
    """The default stack, English chosen under "I speak": the utterance is transcribed correctly and the avatar
    answers with audio and frames; prints end of speech -> first played frame / first audio sample (ms) and saves
    talk.png (scripts/docs_screenshots.py copies it into docs/)."""
    _need_browser()
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    from engine.graph.registry import NodeRegistry

    registry = NodeRegistry()
    registry.discover("nodes")
    workflow = json.loads((ROOT / "workflows" / "avatar_chat.api.json").read_text())
    wav = speech_wav(tmp_path, "Hello! What is your favourite book?", "en-us", lead_s=4.0, tail_s=90.0)
    async with serve_talk(tmp_path, registry, {"avatar_chat": workflow}, monkeypatch) as srv:
        # Warm-up: a typed turn in another session loads the shared models (Whisper, LLM, TTS) and prepares the
        # photo, so the measured turn is a conversation turn, not model loading.
        warm = await TalkClient.connect(srv.ws_url)
        assert (await warm.start("avatar_chat", photo="default portrait"))["type"] == "ready"
        await warm.send({"type": "text", "text": "Hi!"})
        await warm.wait_for(lambda m: m["type"] == "transcript" and m["role"] == "avatar" and m["final"], 300)
        await warm.close()
        seen = await run_page(srv.url, wav, "avatar_chat", timeout_s=240, screenshot=screenshot_dir(tmp_path) / "talk.png",
                              language="en")
    starts = [m for m in seen["sent"] if m.get("type") == "start"]
    assert starts and starts[0].get("language") == "en", starts  # the page sends the choice with Start
    errors = [m for m in seen["received"] if m.get("type") == "error"]
    assert not errors, errors
    users = [m for m in seen["received"] if m.get("type") == "transcript" and m["role"] == "user" and m["final"]]
    assert users, seen["received"][-10:]
    words = users[0]["text"].lower()
    assert "favourite book" in words or "favorite book" in words, users[0]["text"]
    assert seen["media"]["frames"] > 10 and seen["media"]["audio"] > 10
    turn = seen["stamps"][1]
    frame_ms = turn["first_frame_played"] - turn["end_of_speech"]
    audio_ms = turn["first_audio_played"] - turn["end_of_speech"]
    stages = {k: round(v - turn["end_of_speech"]) for k, v in sorted(turn.items(), key=lambda kv: kv[1])}
    print(f"\nreal stack, browser: end of speech -> first frame played {frame_ms:.0f} ms, first audio sample "
          f"played {audio_ms:.0f} ms; stages (ms after end of speech): {stages}")
    print("transcript:", seen["transcript"].replace("\n", " | "))
    assert 0 < frame_ms < 30000 and 0 < audio_ms < 30000
