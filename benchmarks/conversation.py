"""Conversation latency benchmark: end of speech -> first avatar audio and frame, over spoken turns in English and
Russian, with the default stack (workflows/avatar_chat: Silero VAD, Whisper, LLM persona, TTS, face animator).

It runs the real server in-process (the app factory of server/app.py with the Talk router) on 127.0.0.1 and talks
to it over the Talk WebSocket exactly as the page does: 20 ms PCM16 frames at 16 kHz, in real time, continuously
(silence between utterances). The user's utterances are espeak-ng speech (Russian: Festival msu_ru_nsh when
installed). Per turn it records:

* ``first_audio`` / ``first_frame``: when the first avatar audio / video packet of the turn reached the client,
  measured from the moment the client sent the last frame of the utterance's voice (the true end of speech);
* ``reply``: max of the two (first avatar audio + frame);
* the server's per-stage stamps (asr_final, llm_first_token, llm_first_sentence, tts_first_chunk,
  first_frame_sent), also from the client's end of speech, and the server's own end-of-speech estimate (the VAD
  turn end minus its end silence) for comparison.

Browser playback adds the page's jitter prebuffer (120 ms) and drawing; tests/test_talk_browser.py measures that.

Run: ``.venv/bin/python benchmarks/conversation.py [--turns 12] [--langs en,ru] [--workflow PATH]``; the last line
printed is JSON. Needs espeak-ng and the default models (python main.py models install ...).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # first: benchmarks/engine.py must not shadow the engine package

from engine.live.latency import percentile  # noqa: E402
from nodes.common.audio import float_to_pcm16  # noqa: E402

JUDGES = ("character_break", "echo", "self_repeat", "identity_swap", "wrong_language", "filler", "too_long", "markup", "masculine",
          "empty")


class GuardLog(logging.Handler):
    """Counts what the persona's reply guard did in the in-process server (its log lines)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.retries = 0
        self.fallbacks = 0
        self.cuts = 0

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "rejected before it was spoken" in message:
            self.retries += 1
        elif "every try was rejected" in message:
            self.fallbacks += 1
        elif "reply guard" in message and " cut before " in message:
            self.cuts += 1


def judge_turn(result: TurnResult, earlier: list[str]) -> list[str]:
    """The judges that fail on the avatar's reply to what the server heard (``earlier``: her replies before)."""
    from nodes.think import judges as J
    from nodes.think.guard import instruction_texts

    if result.error or not result.turn:
        return []
    expect = J.Expectation(user_text=result.heard or result.said, language=result.lang,
                           earlier_replies=tuple(earlier), instructions=instruction_texts(result.lang))
    return [f.judge for f in J.judge_reply(result.reply, expect)]

RATE = 16000
FRAME = 320  # 20 ms, as the page's mic worklet sends
HEADER = struct.Struct("<BId")
STAGES = ("asr_final", "llm_first_token", "llm_first_sentence", "tts_first_chunk", "first_frame_sent")

UTTERANCES: dict[str, tuple[str, ...]] = {
    "en": ("Hello! What is your name?", "What do you like to read?", "Do you like music?",
           "Where do you live?", "What is your favourite colour?", "Tell me about your day.",
           "Do you have any pets?", "What is the weather like today?", "Can you recommend a good book?",
           "What do you do on weekends?", "Do you like to travel?", "Thank you, goodbye!"),
    "ru": ("Привет! Как тебя зовут?", "Что ты любишь читать?", "Ты любишь музыку?", "Где ты живёшь?",
           "Какой твой любимый цвет?", "Расскажи мне о своём дне.", "У тебя есть собака?",
           "Какая сегодня погода?", "Посоветуй мне хорошую книгу.", "Что ты делаешь в выходные?",
           "Ты любишь путешествовать?", "Спасибо, до свидания!"),
}
VOICES = {"en": "en-us", "ru": "ru"}
WARM_UP = {"en": "Hi there!", "ru": "Привет!"}  # each session's first turn (models load): reported, not counted


def espeak(text: str, lang: str, folder: Path) -> np.ndarray:
    """16 kHz mono float32 speech of the simulated user: espeak-ng; Russian with Festival's msu_ru_nsh voice when
    installed (Whisper base hears espeak-ng's Russian badly, which would test the user's voice, not the avatar)."""
    import shutil

    from nodes.common.audio import load_audio

    path = folder / f"u{abs(hash((text, lang)))}.wav"
    if lang == "ru" and shutil.which("text2wave"):
        source = folder / f"u{abs(hash((text, lang)))}.txt"
        source.write_text(text, encoding="utf-8")
        subprocess.run(["text2wave", "-eval", "(voice_msu_ru_nsh_clunits)", str(source), "-o", str(path)],
                       check=True, capture_output=True)
    else:
        subprocess.run(["espeak-ng", "-v", VOICES[lang], "-s", "160", "-w", str(path), text], check=True,
                       capture_output=True)
    return load_audio(path, RATE).samples


@dataclass
class TurnResult:
    lang: str
    said: str
    heard: str = ""
    reply: str = ""
    turn: int = 0
    eos_ms: float = 0.0  # epoch ms when the client sent the last voiced frame
    first_audio_ms: float | None = None  # after eos
    first_frame_ms: float | None = None
    stages_ms: dict[str, float] = field(default_factory=dict)  # server stamps, after the client's eos
    server_eos_offset_ms: float | None = None  # server end_of_speech estimate - client eos
    error: str = ""
    barge_in: bool = False
    warm_up: bool = False
    judges: list[str] = field(default_factory=list)  # the reply judges (nodes/think/judges.py) that failed

    @property
    def reply_ms(self) -> float | None:
        if self.first_audio_ms is None or self.first_frame_ms is None:
            return None
        return max(self.first_audio_ms, self.first_frame_ms)


class TalkDriver:
    """A Talk page stand-in: a continuous real-time mic (speech when queued, silence otherwise) and a receiver."""

    def __init__(self, url: str):
        self.url = url
        self.ws: Any = None
        self.messages: list[dict[str, Any]] = []
        self.first_rx: dict[tuple[int, int], float] = {}  # (turn, kind) -> epoch ms
        self.packets = 0
        self._speech: list[bytes] = []
        self._spoken = asyncio.Event()
        self.last_voice_sent_ms = 0.0
        self._tasks: list[asyncio.Task[Any]] = []
        self.closed = False

    async def open(self, **start: Any) -> dict[str, Any]:
        import websockets

        self.ws = await websockets.connect(self.url, max_size=2**24, open_timeout=30)
        self._tasks = [asyncio.create_task(self._receive()), asyncio.create_task(self._mic())]
        await self.ws.send(json.dumps({"type": "start", "sample_rate": RATE, **start}))
        return await self.wait(lambda m: m["type"] in ("ready", "error"), 300)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.ws is not None:
            await self.ws.close()

    async def _receive(self) -> None:
        try:
            async for message in self.ws:
                now = time.time() * 1000
                if isinstance(message, bytes):
                    kind, turn, _ = HEADER.unpack_from(message)
                    self.first_rx.setdefault((turn, kind), now)
                    self.packets += 1
                else:
                    data = json.loads(message)
                    data["_at"] = now
                    self.messages.append(data)
        finally:
            self.closed = True

    async def _mic(self) -> None:
        silence = bytes(FRAME * 2)
        began = time.monotonic()
        sent = 0
        while True:
            if self._speech:
                frame = self._speech.pop(0)
                await self.ws.send(frame)
                if not self._speech:
                    self.last_voice_sent_ms = time.time() * 1000
                    self._spoken.set()
            else:
                await self.ws.send(silence)
            sent += 1
            delay = began + sent * FRAME / RATE - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -1.0:  # the loop fell behind (CPU contention): do not burst to catch up
                began, sent = time.monotonic(), 0

    async def say(self, samples: np.ndarray) -> float:
        """Queue an utterance and wait until its last voiced frame is sent; returns that time (epoch ms)."""
        voiced = np.flatnonzero(np.abs(samples) > 0.02)
        if len(voiced):
            samples = samples[: voiced[-1] + 1]  # the utterance ends with its last voiced sample
        pcm = float_to_pcm16(samples)
        self._spoken.clear()
        self._speech = [pcm[i:i + FRAME * 2] for i in range(0, len(pcm), FRAME * 2)]
        await self._spoken.wait()
        return self.last_voice_sent_ms

    async def wait(self, predicate: Any, timeout: float, start: int = 0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        index = start
        while time.monotonic() < deadline:
            while index < len(self.messages):
                message = self.messages[index]
                index += 1
                if predicate(message):
                    return message
            if self.closed:
                raise ConnectionError("the server closed the connection")
            await asyncio.sleep(0.02)
        raise TimeoutError(f"no matching message within {timeout:.0f} s")

    def stamps(self, turn: int) -> dict[str, float]:
        out: dict[str, float] = {}
        for m in self.messages:
            if m.get("type") == "latency" and m.get("turn") == turn:
                out.update(m["stamps"])
        return out


async def one_turn(driver: TalkDriver, lang: str, text: str, samples: np.ndarray, timeout: float = 90.0,
                   barge_in: bool = False) -> TurnResult:
    result = TurnResult(lang, text, barge_in=barge_in)
    mark = len(driver.messages)
    result.eos_ms = await driver.say(samples)
    try:
        user = await driver.wait(lambda m: m.get("type") == "transcript" and m.get("role") == "user"
                                 and m.get("final"), timeout, start=mark)
        result.turn, result.heard = int(user["turn"]), user["text"]
        reply = await driver.wait(lambda m: m.get("type") == "transcript" and m.get("role") == "avatar"
                                  and m.get("final") and m.get("turn") == result.turn, timeout, start=mark)
        result.reply = reply["text"]
        if barge_in:
            return result
        await driver.wait(lambda m: m.get("type") == "state" and m.get("state") == "listening", timeout,
                          start=driver.messages.index(reply))
    except (TimeoutError, ConnectionError) as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    errors = [m["message"] for m in driver.messages[mark:] if m.get("type") == "error"]
    if errors:
        result.error = "; ".join(errors)
    if result.turn:
        audio = driver.first_rx.get((result.turn, 2))
        frame = driver.first_rx.get((result.turn, 1))
        result.first_audio_ms = audio - result.eos_ms if audio else None
        result.first_frame_ms = frame - result.eos_ms if frame else None
        stamps = driver.stamps(result.turn)
        result.stages_ms = {k: round(stamps[k] - result.eos_ms, 1) for k in STAGES if k in stamps}
        if "end_of_speech" in stamps:
            result.server_eos_offset_ms = round(stamps["end_of_speech"] - result.eos_ms, 1)
    return result


def default_workflow() -> dict[str, Any]:
    return json.loads((ROOT / "workflows" / "avatar_chat.api.json").read_text(encoding="utf-8"))


class InProcessServer:
    """The app (server/app.py's factory + the Talk router) on a free loopback port, in this event loop."""

    def __init__(self, data_dir: Path, workflow: dict[str, Any] | None = None, registry: Any = None):
        self.data_dir = data_dir
        self.workflow = workflow
        self.registry = registry
        self.url = ""
        self.runtime: Any = None
        self._server: Any = None
        self._task: asyncio.Task[Any] | None = None
        self._previous_dir: Path | None = None

    async def __aenter__(self) -> InProcessServer:
        import socket

        import uvicorn

        import server.talk as talk
        from engine.graph.registry import NodeRegistry
        from engine.app.runtime import Runtime, RuntimeConfig
        from server.app import ServerConfig, create_app

        registry = self.registry
        if registry is None:
            registry = NodeRegistry()
            registry.discover("nodes")
        if self.workflow is not None:
            folder = self.data_dir / "workflows"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "bench_chat.api.json").write_text(json.dumps(self.workflow))
            self._previous_dir = talk.options.WORKFLOWS_DIR
            talk.options.WORKFLOWS_DIR = folder
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.runtime = Runtime(RuntimeConfig(data_dir=self.data_dir / "data",
                                             custom_nodes_dir=self.data_dir / "custom_nodes"), registry=registry)
        wrapped = create_app(self.runtime, ServerConfig(port=port, local_worker=False, serve_frontend=False))
        self.app = getattr(wrapped, "app", wrapped)  # older factories wrapped the app in the middleware
        talk.mount_talk(self.app, self.runtime)
        self._server = uvicorn.Server(uvicorn.Config(wrapped, host="127.0.0.1", port=port, log_level="warning",
                                                     lifespan="on", ws_max_size=16 * 2**20))
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            if self._task.done():
                raise RuntimeError("the server did not start")
            await asyncio.sleep(0.05)
        self.url = f"ws://127.0.0.1:{port}/ws/talk"
        return self

    async def __aexit__(self, *exc: Any) -> None:
        import server.talk as talk

        self._server.should_exit = True
        try:
            await asyncio.wait_for(self._task, 60)
        finally:
            if self._previous_dir is not None:
                talk.options.WORKFLOWS_DIR = self._previous_dir


def summarize(results: list[TurnResult]) -> dict[str, Any]:
    warm = [r for r in results if r.warm_up]
    results = [r for r in results if not r.warm_up]
    ok = [r for r in results if not r.error and r.reply_ms is not None]

    def stats(values: list[float]) -> dict[str, float | int | None]:
        return {"median_ms": round(statistics.median(values)) if values else None,
                "p90_ms": round(percentile(values, 0.9)) if values else None, "n": len(values)}

    out: dict[str, Any] = {"turns": len(results), "ok_turns": len(ok), "errors": len(results) - len(ok),
                           "reply": stats([r.reply_ms for r in ok]),
                           "first_audio": stats([r.first_audio_ms for r in ok if r.first_audio_ms is not None]),
                           "first_frame": stats([r.first_frame_ms for r in ok if r.first_frame_ms is not None]),
                           "stages": {s: stats([r.stages_ms[s] for r in ok if s in r.stages_ms]) for s in STAGES},
                           "server_eos_offset": stats([r.server_eos_offset_ms for r in ok
                                                       if r.server_eos_offset_ms is not None]),
                           "warm_up_turns": [{"lang": r.lang, "reply_ms": r.reply_ms, "error": r.error}
                                             for r in warm]}
    for lang in sorted({r.lang for r in results}):
        mine = [r for r in ok if r.lang == lang]
        out[f"reply_{lang}"] = stats([r.reply_ms for r in mine])
        judged = [r for r in results if r.lang == lang and r.turn and not r.error]
        rates = {f"{j}_rate": round(sum(j in r.judges for r in judged) / len(judged), 3) if judged else None
                 for j in JUDGES}
        rates["pass_rate"] = round(sum(not r.judges for r in judged) / len(judged), 3) if judged else None
        out[f"judges_{lang}"] = {"replies": len(judged), **rates}
    return out


async def run(turns_per_lang: int, langs: list[str], workflow: dict[str, Any] | None, persona: str,
              verbose: bool) -> tuple[list[TurnResult], dict[str, Any]]:
    results: list[TurnResult] = []
    with tempfile.TemporaryDirectory(prefix="conversation-bench-") as tmp:
        folder = Path(tmp)
        speech = {lang: [(t, espeak(t, lang, folder)) for t in UTTERANCES[lang][:turns_per_lang]] for lang in langs}
        async with InProcessServer(folder, workflow or default_workflow()) as srv:
            for lang in langs:  # one session per language: a conversation, with its dialog memory
                driver = TalkDriver(srv.url)
                began = time.perf_counter()
                ready = await driver.open(workflow="bench_chat", persona=persona, photo="default portrait",
                                          voice="")
                if ready["type"] != "ready":
                    raise SystemExit(f"the session did not start: {ready}")
                print(f"[{lang}] session ready in {time.perf_counter() - began:.1f} s", flush=True)
                await asyncio.sleep(2.0)  # the graph loads its models on start
                warm_up = (WARM_UP[lang], espeak(WARM_UP[lang], lang, folder))
                for index, (text, samples) in enumerate([warm_up, *speech[lang]]):
                    result = await one_turn(driver, lang, text, samples)
                    result.warm_up = index == 0
                    result.judges = judge_turn(result, [r.reply for r in results if r.lang == lang and r.reply])
                    results.append(result)
                    if verbose:
                        kind = "warm-up turn" if result.warm_up else "turn"
                        print(f"[{lang}] {kind} {result.turn}: said {text!r} heard {result.heard!r} -> "
                              f"{result.reply[:80]!r}; reply {result.reply_ms} ms (audio {result.first_audio_ms}, "
                              f"frame {result.first_frame_ms}) stages {result.stages_ms} {result.error}"
                              f"{'  !! ' + ', '.join(result.judges) if result.judges else ''}", flush=True)
                    await asyncio.sleep(0.6)
                await driver.close()
    return results, summarize(results)


def main() -> None:
    from engine.app.malloc import limit_malloc_arenas

    limit_malloc_arenas()  # as main.py does for the app, before any thread starts
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=12, help="turns per language (at most 12)")
    parser.add_argument("--langs", default="en,ru")
    parser.add_argument("--workflow", type=Path, default=None, help="an API-form chat workflow (default: "
                                                                    "workflows/avatar_chat.api.json)")
    parser.add_argument("--persona", default="alisa")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    workflow = json.loads(args.workflow.read_text()) if args.workflow else None
    guard_log = GuardLog()
    for name in ("nodes.think.guard", "nodes.think.conversation"):
        logging.getLogger(name).addHandler(guard_log)
        logging.getLogger(name).setLevel(logging.INFO)
    load_before = os.getloadavg()[0]
    results, summary = asyncio.run(run(min(args.turns, 12), args.langs.split(","), workflow, args.persona,
                                       not args.quiet))
    summary["guard"] = {"retries": guard_log.retries, "fallbacks": guard_log.fallbacks, "cuts": guard_log.cuts}
    summary["load_average"] = {"start": round(load_before, 2), "end": round(os.getloadavg()[0], 2)}
    print("\nend of speech -> first avatar audio + frame (client receive), 2-core CPU, no GPU, "
          f"{time.strftime('%Y-%m-%d')}")
    print(f"  turns {summary['turns']}, ok {summary['ok_turns']}, errors {summary['errors']}")
    for key in ("reply", "first_audio", "first_frame", *[k for k in summary if k.startswith("reply_")]):
        s = summary[key]
        print(f"  {key:14s} median {s['median_ms']} ms  p90 {s['p90_ms']} ms  (n={s['n']})")
    print("  per stage (ms after end of speech):")
    for stage, s in summary["stages"].items():
        print(f"    {stage:20s} median {s['median_ms']}  p90 {s['p90_ms']}")
    print(f"  server end-of-speech estimate - true end: median {summary['server_eos_offset']['median_ms']} ms")
    print("  reply judges (nodes/think/judges.py) on the avatar's replies:")
    for key in [k for k in summary if k.startswith("judges_")]:
        j = summary[key]
        failing = ", ".join(f"{name[:-5]} {100 * v:.0f}%" for name, v in j.items()
                            if name.endswith("_rate") and name != "pass_rate" and v)
        print(f"    {key[7:]}: {j['replies']} replies, all judges passed {100 * (j['pass_rate'] or 0):.0f}%"
              f"{'; failing: ' + failing if failing else ''}")
    g = summary["guard"]
    print(f"  reply guard: {g['retries']} retries, {g['fallbacks']} fallback lines, {g['cuts']} replies cut; "
          f"load average {summary['load_average']['start']} at start, {summary['load_average']['end']} at end")
    for warm in summary["warm_up_turns"]:
        print(f"  first turn of the {warm['lang']} session (models loading, not counted): {warm['reply_ms']} ms "
              f"{warm['error']}")
    print(json.dumps({"benchmark": "conversation", "date": time.strftime("%Y-%m-%d"), "machine": "2-core CPU, no GPU",
                      **summary, "turn_results": [asdict(r) | {"reply_ms": r.reply_ms} for r in results]},
                     ensure_ascii=False))


if __name__ == "__main__":
    main()
