"""Per-voice ASR table (issue 16): language detection, WER and final transcripts across many voices.

Each sentence of ``speech_corpus.SENTENCES`` is spoken by every voice of ``speech_corpus.voices()``, framed by
silence, cut by the Silero VAD (default settings) and transcribed by Whisper base (faster-whisper, the default
stack) three ways:

* ``auto``: language among ru/en with no prior - the first turn of a conversation;
* ``known``: the conversation's language heard on earlier turns as the prior (``prior=`` the true language);
* ``fixed``: the session's language chosen on the Talk page (only that language is decoded).

Per voice: detection accuracy (auto; on turns >= 1.5 s and on all), accuracy once the language is known, WER
(auto: the mean of the sentences' WERs, as issue 16 set its targets, and the corpus WER - all errors over all
words - in which a two-word sentence weighs two words), share of VAD-closed turns with a final transcript and the
slowest final pass. ``speech_corpus.held_out_voices()`` (no ASR setting was tuned on them) are reported apart.
espeak-ng Russian is unintelligible to Whisper base: it counts only for "a final transcript, Cyrillic when the
language is set".

    .venv/bin/python benchmarks/asr_voices.py [--voices NAME,NAME] [--sentences N]
(also ``benchmarks/asr.py --voices``). Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from speech_corpus import RATE, SENTENCES, held_out_voices, voices  # noqa: E402

CYRILLIC = re.compile(r"[\u0400-\u04FF]")
LATIN = re.compile(r"[A-Za-z]")


def normalise(text: str) -> str:
    text = text.lower().replace("ё", "е")
    return " ".join("".join(ch if ch.isalnum() or ch.isspace() else " " for ch in text).split())


def turns_of(samples: np.ndarray, silero) -> list[np.ndarray]:
    from nodes.listen.vad import TurnEnded, VoiceActivityDetector

    vad = VoiceActivityDetector(model=silero)
    pad = np.zeros(int(0.5 * RATE), np.float32)
    audio = np.concatenate([pad, samples, np.zeros(int(0.8 * RATE), np.float32)])
    events = []
    for i in range(0, len(audio), 320):
        events += vad.push(audio[i:i + 320])
    events += vad.flush()
    return [e.samples for e in events if isinstance(e, TurnEnded)]


def _errors(reference: str, heard: str) -> int:
    import jiwer

    out = jiwer.process_words(normalise(reference), normalise(heard) or "<empty>")
    return out.substitutions + out.deletions + out.insertions


def run(selected: list[str] | None = None, n_sentences: int = 6) -> dict:
    import jiwer

    from nodes.listen import weights
    from nodes.listen.backends import FasterWhisperBackend
    from nodes.listen.vad import SileroVAD

    asr = FasterWhisperBackend(weights.locate("whisper-base").path, cpu_threads=1)
    silero = SileroVAD()
    table = {}
    held_out = held_out_voices()
    for name, (language, speak) in {**voices(), **held_out}.items():
        if selected and name not in selected:
            continue
        rows = []
        for text in SENTENCES[language][:n_sentences]:
            samples = speak(text)
            turns = turns_of(samples, silero)
            if not turns:
                rows.append({"text": text, "turns": 0, "final": False, "seconds": len(samples) / RATE})
                continue
            turn = np.concatenate(turns)  # a sentence the VAD cut in two is still one utterance here
            auto = asr.transcribe(turn, ("ru", "en"))
            known = asr.transcribe(turn, ("ru", "en"), prior=language)
            fixed = asr.transcribe(turn, (language,))
            rows.append({
                "text": text, "turns": len(turns), "seconds": round(len(turn) / RATE, 2),
                "auto_lang": auto.language, "known_lang": known.language, "reason": auto.reason,
                "heard": auto.text, "final": bool(auto.text.strip()),
                "final_s": round(max(auto.compute_seconds, known.compute_seconds), 2),
                "wer": jiwer.wer(normalise(text), normalise(auto.text) or "<empty>"),
                "errors": _errors(text, auto.text), "words": len(normalise(text).split()),
                "fixed_script_ok": bool((CYRILLIC if language == "ru" else LATIN).search(fixed.text))
                and not (LATIN if language == "ru" else CYRILLIC).search(fixed.text)})
        heard = [r for r in rows if r.get("turns")]
        long_ = [r for r in heard if r["seconds"] >= 1.5]
        table[name] = {
            "language": language, "turns": len(rows), "held_out": name in held_out,
            "detect_auto": round(sum(r["auto_lang"] == language for r in heard) / max(len(rows), 1), 3),
            "detect_auto_ge1.5s": round(sum(r["auto_lang"] == language for r in long_) / max(len(long_), 1), 3),
            "detect_known": round(sum(r["known_lang"] == language for r in heard) / max(len(rows), 1), 3),
            "wer": round(float(np.mean([r["wer"] for r in heard])) if heard else 1.0, 3),
            "wer_corpus": round(sum(r["errors"] for r in heard) / max(sum(r["words"] for r in heard), 1), 3)
            if heard else 1.0,
            "final_share": round(sum(r["final"] for r in rows) / max(len(rows), 1), 3),
            "slowest_final_s": max((r["final_s"] for r in heard), default=None),
            "fixed_script_ok": round(sum(r["fixed_script_ok"] for r in heard) / max(len(rows), 1), 3),
            "misheard": [(r["text"], r["heard"], r["auto_lang"]) for r in heard if r["auto_lang"] != language][:3],
            "worst": max(((r["wer"], r["text"], r["heard"]) for r in heard), default=None),
        }
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description="per-voice language detection, WER and final transcripts")
    parser.add_argument("--voices", default="", help="comma-separated voice names (default: all)")
    parser.add_argument("--sentences", type=int, default=6)
    args = parser.parse_args()
    began = time.perf_counter()
    table = run([v for v in args.voices.split(",") if v] or None, args.sentences)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    load = os.getloadavg()[0]
    print(f"per-voice ASR, Whisper base (faster-whisper int8), {stamp}, {os.cpu_count()}-core CPU, no GPU, "
          f"load {load:.1f}")
    print(f"{'voice':33s} {'detect auto':>11s} {'>=1.5s':>7s} {'known':>6s} {'WER':>6s} {'corpus':>6s} {'final':>6s} "
          f"{'slowest':>7s} {'fixed script':>12s}")
    for name, row in sorted(table.items(), key=lambda kv: kv[1]["held_out"]):
        if row["held_out"] and not any(r["held_out"] for r in list(table.values())[:list(table).index(name)]):
            print("held out (no setting was tuned on these voices):")
        print(f"{name:33s} {row['detect_auto']:11.0%} {row['detect_auto_ge1.5s']:7.0%} {row['detect_known']:6.0%} "
              f"{row['wer']:6.1%} {row['wer_corpus']:6.1%} {row['final_share']:6.0%} "
              f"{row['slowest_final_s'] or 0:6.2f}s "
              f"{row['fixed_script_ok']:12.0%}")
        for text, heard, lang in row["misheard"]:
            print(f"    heard as {lang}: {text!r} -> {heard!r}")
        if row["worst"] and row["worst"][0] > 0:
            print(f"    worst: {row['worst'][1]!r} -> {row['worst'][2]!r} (WER {row['worst'][0]:.0%})")
    scored = {k: v for k, v in table.items() if not k.startswith("espeak-ru")}
    turns = sum(v["turns"] for v in scored.values()) or 1
    summary = {
        "detect_auto_ge1.5s": round(sum(v["detect_auto_ge1.5s"] * v["turns"] for v in scored.values()) / turns, 3),
        "detect_auto_all": round(sum(v["detect_auto"] * v["turns"] for v in scored.values()) / turns, 3),
        "detect_known": round(sum(v["detect_known"] * v["turns"] for v in scored.values()) / turns, 3),
        "final_share": round(sum(v["final_share"] * v["turns"] for v in table.values())
                             / (sum(v["turns"] for v in table.values()) or 1), 3),
    }
    for group, held in (("tuned", False), ("held_out", True)):
        for lang in ("ru", "en"):
            rows = [v for v in scored.values() if v["held_out"] == held and v["language"] == lang]
            if rows:
                summary[f"{group}_{lang}_wer_mean"] = round(float(np.mean([v["wer"] for v in rows])), 3)
                summary[f"{group}_{lang}_wer_worst"] = max(v["wer"] for v in rows)
    summary["slowest_final_s"] = max((v["slowest_final_s"] or 0 for v in table.values()), default=None)
    print(f"over all voices but espeak-ng Russian: detection (auto, turns >= 1.5 s) {summary['detect_auto_ge1.5s']:.1%}"
          f", auto all turns {summary['detect_auto_all']:.1%}, language known {summary['detect_known']:.1%}; "
          f"turns with a final transcript {summary['final_share']:.1%}; took {time.perf_counter() - began:.0f} s")
    print(json.dumps({"benchmark": "asr_voices", "date": stamp, "load": round(load, 1), "cpus": os.cpu_count(),
                      "machine": platform.machine(), "summary": summary,
                      "voices": {k: {kk: vv for kk, vv in v.items() if kk != "misheard"} for k, v in table.items()}},
                     ensure_ascii=False))


if __name__ == "__main__":
    main()
