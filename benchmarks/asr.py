"""ASR benchmark: WER and latency from end of speech to final text, per Whisper backend, with and without
incremental transcription, on English (espeak-ng) and Russian (Festival) utterances made on the fly.

Each utterance is played as a live microphone would (20 ms frames, paced in real time, 0.5 s of silence before and
1 s after) through the Silero VAD (default 500 ms end-of-speech silence) into the transcriber:

* ``turn_latency``: from the VAD declaring the turn over to the final text (what the conversation waits for);
* ``speech_latency``: from the end of the last voiced VAD window to the final text (includes the 500 ms the VAD
  waits to be sure the user stopped).

Without incremental mode the whole turn is transcribed once it ends (the stream is then fed at full speed: the
final pass does not overlap with speech, so pacing does not change it). Targets on the 2-core CPU: English WER
<= 5 %, Russian WER <= 25 %, final-text latency <= 0.6 s with incremental mode.

    .venv/bin/python benchmarks/asr.py [--backends faster-whisper,openai-whisper] [--limit N] [--no-full-window]
    .venv/bin/python benchmarks/asr.py --voices [--sentences N]   # the per-voice table (asr_voices.py)
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import logging
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nodes.listen import weights  # noqa: E402
from nodes.listen.backends import Transcript  # noqa: E402
from nodes.listen.incremental import IncrementalTurn  # noqa: E402
from nodes.listen.vad import SileroVAD, SpeechAudio, TurnEnded, VADConfig, VoiceActivityDetector  # noqa: E402
from nodes.common.audio import load_audio  # noqa: E402

EN = [
    "Hello, how are you doing today?",
    "I would like to order a pizza with mushrooms.",
    "What time does the train leave for London?",
    "Please turn off the lights in the kitchen.",
    "My name is John and I live in a small town.",
    "Can you tell me a short story about a brave robot?",
    "The weather is very nice this morning.",
    "I have been learning to play the guitar for two years.",
    "Where is the nearest pharmacy?",
    "Thank you very much for your help yesterday.",
    "Let's meet at the cafe after work.",
    "How much does this jacket cost?",
    "I think we should leave before it starts raining.",
    "Could you speak a little more slowly, please?",
    "My favourite color is green.",
    "We are going to the mountains next weekend.",
    "Do you know a good restaurant near here?",
    "The meeting has been moved to Thursday afternoon.",
    "I forgot my keys at home again.",
    "What do you think about artificial intelligence?",
    "Open the window, it is too hot in here.",
    "She reads a book every evening before bed.",
]
RU = [
    "Привет, как у тебя дела сегодня?",
    "Меня зовут Анна, я хочу заказать пиццу с грибами.",
    "Какая завтра будет погода в Москве?",
    "Расскажи мне, пожалуйста, короткую историю.",
    "Я живу в большом городе недалеко от реки.",
    "Сколько стоит билет на поезд до Петербурга?",
    "Пожалуйста, выключи свет на кухне.",
    "Мы поедем на дачу в субботу утром.",
    "Где находится ближайшая аптека?",
    "Спасибо большое за твою помощь.",
    "Давай встретимся в кафе после работы.",
    "Я забыл ключи дома.",
    "Сегодня очень холодно и идёт снег.",
    "Моя сестра работает в больнице.",
    "Какую музыку ты любишь слушать?",
    "Открой окно, здесь слишком жарко.",
    "Он читает книгу каждый вечер.",
    "Мне нужно купить хлеб и молоко.",
    "Ты знаешь хороший ресторан рядом?",
    "Встреча перенесена на четверг.",
    "У нас в саду растут яблоки.",
    "Я учу английский язык уже три года.",
]
FRAME = 320  # 20 ms at 16 kHz
LEAD_S, TAIL_S = 0.5, 1.0
TARGETS = {"wer_en": 0.05, "wer_ru": 0.25, "latency_s": 0.6}


def normalise(text: str) -> str:
    text = text.lower().replace("ё", "е")
    return " ".join("".join(ch if ch.isalnum() or ch.isspace() else " " for ch in text).split())


def corpus_wer(refs: list[str], hyps: list[str]) -> float:
    import jiwer

    return float(jiwer.wer([normalise(r) for r in refs], [normalise(h) or "<empty>" for h in hyps]))


def piper_voice_path() -> Path | None:
    try:
        from engine.models.catalogue import default_store

        return default_store().file("piper-en-us-joe-medium")
    except Exception:
        found = sorted((ROOT / "models" / "piper").glob("**/en_US-joe-medium.onnx"))
        return found[0] if found else None


def piper_english(texts: list[str]) -> list[tuple[str, np.ndarray]]:
    """English from the Piper voice (neural TTS, closer to real speech than espeak-ng); [] when not installed."""
    path = piper_voice_path()
    try:
        from piper import PiperVoice
    except ImportError:
        path = None
    if path is None:
        print("Piper voice not installed: skipping the Piper English set")
        return []
    from nodes.common.audio import resample

    voice = PiperVoice.load(str(path))
    out = []
    for text in texts:
        chunks = list(voice.synthesize(text))
        samples = np.concatenate([c.audio_float_array.astype(np.float32).reshape(-1) for c in chunks])
        out.append((text, resample(samples, chunks[0].sample_rate, 16000)))
    return out


def synthesise(folder: Path) -> dict[str, list[tuple[str, np.ndarray]]]:
    for tool in ("espeak-ng", "text2wave"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is missing: apt-get install $(cat requirements/apt-asr.txt)")
    out: dict[str, list[tuple[str, np.ndarray]]] = {"en": [], "ru": [], "en-piper": piper_english(EN)}
    for i, text in enumerate(EN):
        path = folder / f"en{i}.wav"
        subprocess.run(["espeak-ng", "-w", str(path), text], check=True, capture_output=True)
        out["en"].append((text, load_audio(path).samples))
    for i, text in enumerate(RU):
        path = folder / f"ru{i}.wav"
        subprocess.run(["text2wave", "-eval", "(voice_msu_ru_nsh_clunits)", "-o", str(path)], input=text.encode(),
                       check=True, capture_output=True)
        out["ru"].append((text, load_audio(path).samples))
    return out


async def play(engine, silero: SileroVAD, samples: np.ndarray, languages: tuple[str, ...], incremental: bool,
               short_window: bool) -> dict:
    """Feed one utterance like a live mic; returns text and latencies of its (last) turn."""
    loop = asyncio.get_running_loop()

    async def run_pass(audio: np.ndarray) -> Transcript:
        return await loop.run_in_executor(None, engine.transcribe, audio, languages, short_window)

    stream = np.concatenate([np.zeros(int(LEAD_S * 16000), np.float32), samples,
                             np.zeros(int(TAIL_S * 16000), np.float32)])
    vad = VoiceActivityDetector(VADConfig(), model=silero)
    turn = IncrementalTurn(run_pass)
    texts: list[str] = []
    latencies: list[tuple[float, float, bool, int]] = []
    t0 = time.perf_counter()
    frames = [stream[i:i + FRAME] for i in range(0, len(stream), FRAME)]
    for i, frame in enumerate(frames + [None]):
        if incremental and frame is not None:
            delay = t0 + i * FRAME / 16000 - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        events = vad.push(frame) if frame is not None else vad.flush()
        for ev in events:
            if isinstance(ev, SpeechAudio) and incremental:
                turn.offer(ev.samples)
            elif isinstance(ev, TurnEnded):
                ended = time.perf_counter()
                done = await turn.finish(ev.samples)
                now = time.perf_counter()
                speech_end_wall = t0 + ev.speech_end if incremental else ended  # unpaced: no wall clock for audio
                extra_wait = 0.0 if incremental else VADConfig().min_silence_ms / 1000
                latencies.append((now - ended, now - speech_end_wall + extra_wait, done.reused, done.passes))
                texts.append(done.transcript.text)
                turn = IncrementalTurn(run_pass)
        if incremental:
            await asyncio.sleep(0)
    last = latencies[-1] if latencies else (float("nan"), float("nan"), False, 0)
    return {"text": " ".join(t for t in texts if t), "turn_latency": last[0], "speech_latency": last[1],
            "reused": last[2], "passes": last[3], "turns": len(latencies)}


def load_backend(name: str, model_dir: weights.WhisperModelDir):
    from nodes.listen.backends import FasterWhisperBackend, OpenAIWhisperBackend
    from nodes.listen.convert_ct2 import ensure_openai_checkpoint

    t = time.perf_counter()
    if name == "faster-whisper":
        engine = FasterWhisperBackend(model_dir.path, cpu_threads=2)
    else:
        engine = OpenAIWhisperBackend(ensure_openai_checkpoint(model_dir.path))
    return engine, time.perf_counter() - t


def summarise(rows: list[dict]) -> dict:
    turn = [r["turn_latency"] for r in rows]
    speech = [r["speech_latency"] for r in rows]
    return {
        "wer": round(corpus_wer([r["ref"] for r in rows], [r["text"] for r in rows]), 4),
        "turn_latency_median_s": round(statistics.median(turn), 3),
        "turn_latency_p90_s": round(float(np.percentile(turn, 90)), 3),
        "speech_latency_median_s": round(statistics.median(speech), 3),
        "reused_share": round(sum(r["reused"] for r in rows) / len(rows), 2),
        "mean_passes": round(statistics.mean(r["passes"] for r in rows), 2),
        "split_turns": sum(r["turns"] != 1 for r in rows),
        "n": len(rows),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description="Whisper WER and end-of-speech latency")
    parser.add_argument("--backends", default="faster-whisper,openai-whisper")
    parser.add_argument("--limit", type=int, default=0, help="utterances per language (0: all)")
    parser.add_argument("--no-full-window", action="store_true", help="skip the 30 s-window comparison")
    parser.add_argument("--model", default=weights.DEFAULT_MODEL)
    parser.add_argument("--modes", default="final-only,incremental", help="final-only, incremental")
    parser.add_argument("--voices", action="store_true",
                        help="instead: the per-voice table (language detection, WER, final transcripts; "
                             "benchmarks/asr_voices.py)")
    args, rest = parser.parse_known_args()
    if args.voices:
        import asr_voices

        sys.argv = [sys.argv[0], *rest]
        asr_voices.main()
        return
    logging.basicConfig(level=logging.WARNING)
    model_dir = weights.locate(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        data = synthesise(Path(tmp))
    if args.limit:
        data = {k: v[:args.limit] for k, v in data.items()}
    silero = SileroVAD()
    print(f"ASR benchmark {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()}-core CPU, "
          f"no GPU, load average {os.getloadavg()[0]:.1f}; model {args.model}; {len(data['en'])} English (espeak-ng) "
          f"+ {len(data['en-piper'])} English (Piper) + {len(data['ru'])} Russian (Festival) utterances; "
          f"language detected among ru,en")
    results: dict[str, dict] = {}
    for backend in [b.strip() for b in args.backends.split(",") if b.strip()]:
        engine, load_s = load_backend(backend, model_dir)
        engine.transcribe(data["en"][0][1], ("ru", "en"))  # warm-up
        modes = {m.strip() for m in args.modes.split(",")}
        configs = [c for c in [("final-only", False, True), ("incremental", True, True)] if c[0] in modes]
        if backend == "faster-whisper" and not args.no_full_window:
            configs.insert(0, ("final-only, 30 s window", False, False))
        for label, incremental, short_window in configs:
            for lang in [k for k in ("en", "en-piper", "ru") if data[k]]:
                rows = []
                for ref, samples in data[lang]:
                    row = await play(engine, silero, samples, ("ru", "en"), incremental, short_window)
                    rows.append({**row, "ref": ref})
                summary = summarise(rows)
                summary["tts"] = {"en": "espeak-ng", "en-piper": "piper joe", "ru": "festival msu_ru_nsh"}[lang]
                key = f"{backend}|{label}|{lang}"
                results[key] = {**summary, "load_s": round(load_s, 2)}
                print(f"{backend:15s} {label:24s} {lang}: WER {summary['wer'] * 100:5.1f} %  "
                      f"turn->text median {summary['turn_latency_median_s']:.2f} s "
                      f"(p90 {summary['turn_latency_p90_s']:.2f})  speech-end->text "
                      f"{summary['speech_latency_median_s']:.2f} s  reused {summary['reused_share']:.0%}  "
                      f"passes {summary['mean_passes']:.1f}  load average {os.getloadavg()[0]:.1f}", flush=True)
                worst = sorted(rows, key=lambda r: -jiwer_row(r))[:2]
                for r in worst:
                    print(f"    e.g. {r['ref']!r} -> {r['text']!r}")
        del engine
    checks = {}
    for key, value in results.items():
        backend, label, lang = key.split("|")
        checks[key] = {"wer_ok": value["wer"] <= TARGETS[f"wer_{lang[:2]}"],
                       "latency_ok": value["turn_latency_median_s"] <= TARGETS["latency_s"]
                       if label == "incremental" else None}
    print(json.dumps({"benchmark": "asr", "date": datetime.date.today().isoformat(),
                      "machine": f"{os.cpu_count()}-core CPU, no GPU ({platform.processor() or platform.machine()})",
                      "targets": TARGETS, "results": results, "checks": checks}, ensure_ascii=False))


def jiwer_row(row: dict) -> float:
    return corpus_wer([row["ref"]], [row["text"]])


if __name__ == "__main__":
    asyncio.run(main())
