"""Face benchmark: preprocessing time, frames per second at 512x512 per backend, memory, and a contact sheet.

* preprocessing: ``prepare_avatar`` (face mesh on the photo, alignment, face mesh on the crop), median of 3 after a
  first (cold) call that includes loading MediaPipe;
* default animator: frames/s rendering speech at 512x512 (median of 3 runs of 10 s of audio);
* wav2lip / sadtalker: frames/s of our architectures with randomly initialised weights (the speed does not depend
  on the weights), on this CPU;
* memory: resident set size growth, peak RSS, and the models' weight bytes;
* ``docs/face_contact_sheet.png``: frames from one animator run (mouth closed, mouth open, a blink, a smile).

Run: ``.venv/bin/python benchmarks/face.py [--skip-neural]``; the last line printed is JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # first: benchmarks/engine.py must not shadow the engine package

SHEET = ROOT / "docs" / "face_contact_sheet.png"
TILE = 224  # pixels per frame on the contact sheet


def load_lipsync():
    """benchmarks/lipsync.py as a module (benchmarks/ is not a package; its other files must not shadow ours)."""
    import importlib.util

    if "face_lipsync_benchmark" in sys.modules:
        return sys.modules["face_lipsync_benchmark"]
    spec = importlib.util.spec_from_file_location("face_lipsync_benchmark", ROOT / "benchmarks" / "lipsync.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def speech(seconds: float) -> tuple[np.ndarray, int]:
    """espeak-ng speech when available, else a voice-like synthetic signal (syllable-modulated harmonics)."""
    lipsync = load_lipsync()

    if lipsync.espeak_available():
        parts, sr = [], 16000
        with tempfile.TemporaryDirectory() as d:
            for lang, text in lipsync.UTTERANCES:
                s, sr = lipsync.synthesize(text, lang, Path(d))
                parts += [s, np.zeros(sr // 4, np.float32)]
                if sum(len(p) for p in parts) >= seconds * sr:
                    break
        audio = np.concatenate(parts)
        return audio[: int(seconds * sr)], sr
    sr = 16000
    t = np.arange(int(seconds * sr)) / sr
    env = np.clip(np.sin(2 * np.pi * 3.5 * t), 0, None) ** 0.7
    voice = sum(np.sin(2 * np.pi * 140 * k * t) / k for k in range(1, 8))
    return (0.2 * env * voice).astype(np.float32), sr


def time_backend(backend, audio: np.ndarray, sr: int, cpu: dict | None = None) -> tuple[float, int]:
    """Frames per second of wall-clock time; ``cpu`` gets frames per CPU-second of this process (all threads),
    which a busy shared machine distorts less."""
    from nodes.face.stream import FramePump

    pump = FramePump(backend)
    t0, c0 = time.perf_counter(), time.process_time()
    n = 0
    for k in range(0, len(audio), sr // 2):  # half-second chunks, as a TTS would stream them
        n += len(pump.audio(audio[k:k + sr // 2], sr, k / sr))
    n += len(pump.finish())
    if cpu is not None:
        cpu["fps_per_cpu_second"] = n / max(time.process_time() - c0, 1e-9)
    return n / (time.perf_counter() - t0), n


def contact_sheet(faces: dict, path: Path) -> dict:
    """Per portrait, drive one animator through silence, speech, a blink and a happy smile; keep the telling
    frames: a row of whole frames and a row of face close-ups per portrait."""
    from PIL import Image

    rows, names = [], []
    for face in faces.values():
        tiles_full, tiles_zoom, names = _sheet_rows(face)
        rows += [np.concatenate(tiles_full, 1), np.concatenate(tiles_zoom, 1)]
    sheet = np.concatenate(rows, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(sheet).save(path, optimize=True)
    return {"path": str(path.relative_to(ROOT)), "frames": names, "portraits": list(faces)}


def _sheet_rows(face):
    import cv2

    from nodes.face.animator import DefaultAnimator

    audio, sr = speech(2.0)
    an = DefaultAnimator(face, seed=3)
    hop = sr // 25
    picks: dict[str, tuple[float, np.ndarray]] = {}

    def keep(name: str, score: float, image: np.ndarray) -> None:
        if name not in picks or score > picks[name][0]:
            picks[name] = (score, image)

    silence = np.zeros(hop, np.float32)
    an.driver.next_blink = 1e9  # blinks only where this sheet asks for one
    for _ in range(12):
        img = an.frame(silence, sr)
    keep("mouth closed", 1.0, img)
    for k in range(0, len(audio) - hop, hop):
        img = an.frame(audio[k:k + hop], sr)
        keep("mouth open", an.last_controls.amp("jaw"), img)
        if 0.3 < an.last_controls.amp("jaw") < 0.55:
            keep("half open", -abs(an.last_controls.amp("jaw") - 0.42), img)
    for _ in range(8):
        an.frame(silence, sr)
    an.driver.force_blink()
    for _ in range(6):
        img = an.frame(silence, sr)
        keep("blink", an.last_controls.amp("blink"), img)
    for _ in range(30):
        img = an.frame(silence, sr, emotion="happy")
    keep("smile (happy)", 1.0, img)
    for k in range(0, len(audio) // 2, hop):
        img = an.frame(audio[k:k + hop], sr, emotion="happy")
        keep("smile, talking", an.last_controls.amp("jaw"), img)
    for _ in range(30):
        img = an.frame(silence, sr, emotion="surprised")
    keep("surprised", 1.0, img)
    names = ["mouth closed", "half open", "mouth open", "blink", "smile (happy)", "smile, talking", "surprised"]
    names = [n for n in names if n in picks]
    hx0, hy0, hx1, hy1 = face.boxes["head"]
    half = int(0.42 * max(hx1 - hx0, hy1 - hy0))
    cx, cy = (hx0 + hx1) // 2, (hy0 + hy1) // 2 + half // 6
    x0, y0 = max(0, cx - half), max(0, cy - half)
    x1, y1 = min(512, x0 + 2 * half), min(512, y0 + 2 * half)
    tiles_full, tiles_zoom = [], []
    for n in names:
        img = picks[n][1]
        full = cv2.resize(img, (TILE, TILE), interpolation=cv2.INTER_AREA)
        zoom = cv2.resize(img[y0:y1, x0:x1], (TILE, TILE), interpolation=cv2.INTER_AREA)
        label = np.full((28, TILE, 3), 255, np.uint8)
        cv2.putText(label, n, (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
        tiles_full.append(np.concatenate([label, full], 0))
        tiles_zoom.append(zoom)
    return tiles_full, tiles_zoom, names


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--skip-neural", action="store_true", help="only the default animator")
    ap.add_argument("--seconds", type=float, default=10.0, help="audio per default-animator run")
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    lipsync = load_lipsync()

    from nodes.face.animator import DefaultAnimator
    from nodes.face.prepare import prepare_avatar

    import os

    results: dict = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": "2-core CPU, no GPU",
                     "load_average_1min_at_start": os.getloadavg()[0]}
    print(f"{results['date']}; {results['machine']}; load average {os.getloadavg()[0]:.1f} (other work on the CPU "
          f"slows every figure)")
    rss0 = rss_mb()
    photos = lipsync.portraits()
    t0 = time.perf_counter()
    face = prepare_avatar(photos["astronaut"])
    cold = time.perf_counter() - t0
    warm = {}
    for name, photo in photos.items():
        runs = []
        for _ in range(3):
            t0 = time.perf_counter()
            prepare_avatar(photo)
            runs.append(time.perf_counter() - t0)
        warm[name] = statistics.median(runs)
    results["prepare_cold_s"] = cold
    results["prepare_s"] = warm
    print(f"preprocessing: cold {cold:.2f} s (loads MediaPipe); warm " +
          ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in warm.items()))

    audio, sr = speech(args.seconds)
    t0 = time.perf_counter()
    DefaultAnimator(face)
    results["default_rig_s"] = time.perf_counter() - t0
    runs, cpu_runs = [], []
    for seed in range(3):
        cpu: dict = {}
        fps, n = time_backend(DefaultAnimator(face, seed=seed), audio, sr, cpu)
        runs.append(fps)
        cpu_runs.append(cpu["fps_per_cpu_second"])
    results["default_fps"] = statistics.median(runs)
    results["default_fps_per_cpu_second"] = statistics.median(cpu_runs)
    results["default_fps_runs"] = runs
    results["default_frames_per_run"] = n
    results["rss_after_default_mb"] = rss_mb() - rss0
    print(f"default animator: rig {results['default_rig_s']:.2f} s; {statistics.median(runs):.1f} fps at 512x512 "
          f"(runs {', '.join(f'{r:.1f}' for r in runs)}; target >= 50); "
          f"{statistics.median(cpu_runs):.1f} frames per CPU-second")

    if not args.skip_neural:
        import torch

        from nodes.face.wav2lip import Wav2LipBackend, build_model

        torch.manual_seed(0)
        model = build_model().eval()
        w2l_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
        short = audio[: int(1.6 * sr)]
        fps, n = time_backend(Wav2LipBackend(face, model, batch_size=8), short, sr)
        results["wav2lip_fps_random_weights"] = fps
        results["wav2lip_weight_mb"] = w2l_bytes / 2**20
        print(f"wav2lip (random weights, CPU, batch 8, torch threads {torch.get_num_threads()}): {fps:.2f} fps "
              f"over {n} frames; weights {w2l_bytes / 2**20:.0f} MiB")
        try:
            from nodes.face.sadtalker import SadTalkerBackend, build_models

            models = build_models()
            st_bytes = sum(p.numel() * p.element_size() for m in models.values() for p in m.parameters())
            models = {k: m.eval() for k, m in models.items()}
            fps, n = time_backend(SadTalkerBackend(face, models, size=256), audio[: int(0.12 * sr)], sr)
            results["sadtalker_fps_random_weights"] = fps
            results["sadtalker_weight_mb"] = st_bytes / 2**20
            print(f"sadtalker (random weights, CPU, 256): {fps:.3f} fps over {n} frames; "
                  f"weights {st_bytes / 2**20:.0f} MiB")
        except ImportError as exc:
            results["sadtalker"] = f"not available: {exc}"
            print(f"sadtalker: not available ({exc})")

    results["rss_growth_mb"] = rss_mb() - rss0
    results["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    results["load_average_1min_at_end"] = os.getloadavg()[0]
    sheet_faces = {"astronaut": face, "grace_hopper": prepare_avatar(photos["grace_hopper"])}
    results["contact_sheet"] = contact_sheet(sheet_faces, SHEET)
    print(f"memory: RSS +{results['rss_growth_mb']:.0f} MiB, peak {results['peak_rss_mb']:.0f} MiB; "
          f"contact sheet {results['contact_sheet']['path']}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
