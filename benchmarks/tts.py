"""TTS benchmark: time to the first audio chunk and real-time factor per backend and language.

    .venv/bin/python benchmarks/tts.py [--repeats 5] [--xtts]

The synthesizer is loaded once (load time reported separately); then for each repeat one reply of three
sentences is spoken through the backend: first-chunk latency = time until its first piece of audio,
RTF = synthesis time / audio duration. ``adapt`` rows add the pyworld voice adaptation (towards a Festival
reference). ``--xtts`` adds a tiny randomly initialised XTTS (architecture cost of the GPT/HiFi-GAN path, not
XTTS-v2's real size). Medians over the repeats; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nodes.io.media import Audio  # noqa: E402
from nodes.speak.backends import BACKENDS  # noqa: E402

TEXTS = {
    "en": ["Hello! ", "My name is Alice, and I will be your guide today.",
           "The weather is nice, so let us take a walk in the park."],
    "ru": ["Привет! ", "Меня зовут Алиса, и сегодня я буду вашим гидом.",
           "Погода хорошая, давайте прогуляемся по парку."],
}
CASES = [("piper", "en"), ("festival", "ru"), ("festival", "en"), ("espeak", "ru"), ("espeak", "en")]


def measure(synth, language: str, repeats: int, adapter_factory=None) -> dict[str, float]:
    firsts, rtfs = [], []
    for _ in range(repeats):
        adapter = adapter_factory() if adapter_factory else None
        began = time.perf_counter()
        first = None
        audio_s = 0.0
        for sentence in TEXTS[language]:
            for piece in synth.speak(sentence.strip(), language):
                samples = adapter.process(piece.samples, piece.sample_rate) if adapter else piece.samples
                if first is None:
                    first = time.perf_counter() - began
                audio_s += len(samples) / piece.sample_rate
        total = time.perf_counter() - began
        firsts.append(first or total)
        rtfs.append(total / max(audio_s, 1e-9))
    return {"first_chunk_ms": round(1000 * statistics.median(firsts), 1), "rtf": round(statistics.median(rtfs), 3)}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--xtts", action="store_true", help="also a tiny random XTTS (imports coqui-tts: slow)")
    parser.add_argument("--torch-threads", type=int, default=1, help="torch threads for XTTS (1 is fastest on a "
                                                                      "loaded 2-core box)")
    args = parser.parse_args()
    results: dict[str, dict[str, float]] = {}
    synths = {}
    for backend, language in CASES:
        reason = BACKENDS[backend].missing(language)
        if reason:
            print(f"{backend}/{language}: skipped ({reason})")
            continue
        t = time.perf_counter()
        synth = BACKENDS[backend].load(language)
        load_s = time.perf_counter() - t
        list(synth.speak("Warm up." if language == "en" else "Разминка.", language))
        row = measure(synth, language, args.repeats)
        row["load_s"] = round(load_s, 2)
        results[f"{backend}/{language}"] = row
        synths[(backend, language)] = synth
        print(f"{backend:9s} {language}: first chunk {row['first_chunk_ms']:7.1f} ms   RTF {row['rtf']:.3f}   "
              f"load {load_s:.2f} s")

    from nodes.speak.adapt import VoiceAdapter, target_from_audio

    festival_en = synths.get(("festival", "en"))
    if festival_en is not None and ("piper", "en") in synths:
        ref = np.concatenate([p.samples for s in TEXTS["en"] for p in festival_en.speak(s.strip(), "en")])
        target = target_from_audio(Audio(ref, festival_en.sample_rate))
        row = measure(synths[("piper", "en")], "en", args.repeats, lambda: VoiceAdapter(target))
        results["piper+adapt/en"] = row
        print(f"piper+adapt en: first chunk {row['first_chunk_ms']:7.1f} ms   RTF {row['rtf']:.3f}")

    if args.xtts:
        import torch

        from nodes.speak.backends.xtts import XttsSynthesizer, write_random_checkpoint

        torch.set_num_threads(args.torch_threads)

        with tempfile.TemporaryDirectory() as tmp:
            folder = write_random_checkpoint(Path(tmp) / "xtts" / "tiny")
            synth = XttsSynthesizer(folder, "en")
            ref = np.concatenate([p.samples for p in synths[("piper", "en")].speak(" ".join(TEXTS["en"]), "en")])
            from nodes.speak.voice import Voice

            latents = synth.latents_for([Audio(ref, 22050)])
            voice = Voice("bench", "-", xtts=latents)
            firsts, rtfs = [], []
            for _ in range(max(1, args.repeats // 2)):
                began, first, audio_s = time.perf_counter(), None, 0.0
                for piece in synth.speak("Hello there.", "en", voice):
                    first = first or time.perf_counter() - began
                    audio_s += len(piece.samples) / piece.sample_rate
                firsts.append(first)
                rtfs.append((time.perf_counter() - began) / audio_s)
            results["xtts-tiny-random/en"] = {"first_chunk_ms": round(1000 * statistics.median(firsts), 1),
                                              "rtf": round(statistics.median(rtfs), 3)}
            print(f"xtts tiny random en: {results['xtts-tiny-random/en']}")

    for synth in synths.values():
        synth.close()
    defaults = [results[k]["first_chunk_ms"] for k in ("piper/en", "festival/ru") if k in results]
    summary = {"benchmark": "tts", "date": time.strftime("%Y-%m-%d"), "machine": "2-core CPU, no GPU",
               "repeats": args.repeats, "results": results, "target_first_chunk_ms": 150,
               "default_voices_meet_target": bool(defaults) and max(defaults) <= 150}
    print(json.dumps(summary, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
