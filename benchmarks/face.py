"""Face benchmark: preprocessing time, frames per second at 512x512 per backend, memory, and a contact sheet.

* preprocessing: ``prepare_avatar`` (face mesh on the photo, alignment, face mesh on the crop), median of 3 after a
  first (cold) call that includes loading MediaPipe;
* default animator: frames/s rendering speech at 512x512 (median of 3 runs of 10 s of audio);
* wav2lip / sadtalker: frames/s of our architectures with randomly initialised weights (the speed does not depend
  on the weights), on this CPU;
* memory: resident set size growth, peak RSS, and the models' weight bytes;
* ``docs/face_contact_sheet.png``: frames from one animator run (mouth closed, mouth open, a blink, a smile).

* ``--quality`` (``--sheets``): on 11 portraits (3 held back, 1 blind; see benchmarks/face_portraits.py), identity
  similarity (dlib ResNet descriptors of the frames vs the photo), mouth flatness (share of the mouth region in
  large uniform-colour areas, open frames vs the photo), flicker outside the mouth and eyes, lip sync (as benchmarks/lipsync.py) and fps; 2x mouth sheets.

Run: ``.venv/bin/python benchmarks/face.py [--skip-neural] [--quality [--sheets]]``; the last line printed is JSON.
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


def _benchmark_module(name: str, file: str):
    """``benchmarks/<file>`` as the module ``name`` (benchmarks/ is not a package; its other files must not shadow
    ours), loaded once."""
    import importlib.util

    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def load_lipsync():
    """benchmarks/lipsync.py as a module."""
    return _benchmark_module("face_lipsync_benchmark", "lipsync.py")


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


# ------------------------------------------------------------------------------------------------ quality

def load_portraits():
    """benchmarks/face_portraits.py as a module (the portraits, their sources and licences, and their groups)."""
    return _benchmark_module("face_portraits_benchmark", "face_portraits.py")


_P = load_portraits()
HELD_BACK, BLIND, _package_file, _with_glasses = _P.HELD_BACK, _P.BLIND, _P.package_file, _P.with_glasses


def benchmark_portraits() -> dict[str, tuple[np.ndarray, str]]:
    """name -> (photo, where it comes from and its licence): see benchmarks/face_portraits.py."""
    return _P.benchmark_portraits(load_lipsync())


class IdentityEmbedder:
    """dlib's ResNet face descriptor (face-recognition-models 0.3.0): 128-d, compared by cosine similarity."""

    def __init__(self) -> None:
        import dlib

        models = _package_file("face_recognition_models", "models", "dlib_face_recognition_resnet_model_v1.dat")
        shapes = _package_file("face_recognition_models", "models", "shape_predictor_5_face_landmarks.dat")
        if models is None or shapes is None:
            raise RuntimeError("pip install dlib-bin==20.0.1.post1 face-recognition-models==0.3.0")
        self.dlib = dlib
        self.net = dlib.face_recognition_model_v1(str(models))
        self.shape = dlib.shape_predictor(str(shapes))

    def __call__(self, image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
        rect = self.dlib.rectangle(*box)
        shape = self.shape(image, rect)
        v = np.array(self.net.compute_face_descriptor(image, shape, 0), np.float64)
        return v / np.linalg.norm(v)


def _face_box(face) -> tuple[int, int, int, int]:
    from nodes.face import avatar as A

    oval = face.points(A.FACE_OVAL)
    (x0, y0), (x1, y1) = oval.min(0), oval.max(0)
    return int(x0), int(y0), int(x1), int(y1)


def mouth_roi(face) -> tuple[int, int, int, int]:
    """The lips and the skin the opening mouth sweeps (down to the chin's share of a full opening)."""
    from nodes.face import avatar as A

    lips = face.points(A.LIPS_OUTER)
    mw = float(np.linalg.norm(face.landmarks[61] - face.landmarks[291]))
    (x0, y0), (x1, y1) = lips.min(0), lips.max(0)
    return (int(x0 - 0.1 * mw), int(y0 - 0.1 * mw), int(x1 + 0.1 * mw), int(y1 + 0.35 * mw))


def flatness(image: np.ndarray, roi: tuple[int, int, int, int], std_max: float = 2.0) -> float:
    """Share of the ROI's pixels inside large uniform-colour areas: connected regions of pixels whose 5x5
    neighbourhood varies by less than ``std_max`` grey levels in every channel, 1 % of the ROI or more."""
    import cv2

    x0, y0, x1, y1 = roi
    patch = image[y0:y1, x0:x1].astype(np.float32)
    mean = cv2.blur(patch, (5, 5))
    var = cv2.blur(patch * patch, (5, 5)) - mean * mean
    flat = (np.sqrt(np.clip(var, 0, None)).max(2) < std_max).astype(np.uint8)
    n, _, stats, _ = cv2.connectedComponentsWithStats(flat, connectivity=4)
    min_area = max(20, int(0.01 * flat.size))
    big = sum(int(stats[k, cv2.CC_STAT_AREA]) for k in range(1, n) if stats[k, cv2.CC_STAT_AREA] >= min_area)
    return big / flat.size


def flicker(frames, face) -> float:
    """Temporal instability outside the mouth and eyes: mean |second temporal difference| of the grey image over
    the head region minus the lower face and the eyes (smooth head motion cancels; jitter and popping do not)."""
    import cv2

    from nodes.face import avatar as A

    mask = np.zeros((face.size, face.size), np.uint8)
    hx0, hy0, hx1, hy1 = face.boxes["head"]
    mask[max(0, hy0):hy1, max(0, hx0):hx1] = 1
    nose_y = int(face.landmarks[A.NOSE_TIP, 1])
    mask[nose_y:, :] = 0
    ex0, ey0, ex1, ey1 = face.boxes["eyes"]
    mask[max(0, ey0 - 8):ey1 + 8, max(0, ex0 - 8):ex1 + 8] = 0
    grey = [cv2.cvtColor(f.image, cv2.COLOR_RGB2GRAY).astype(np.float32) for f in frames]
    sel = mask.astype(bool)
    diffs = [np.abs(grey[k + 1] - 0.5 * (grey[k] + grey[k + 2]))[sel].mean() for k in range(len(grey) - 2)]
    return float(np.mean(diffs)) if diffs else 0.0


def quality_run(name: str, photo: np.ndarray, audio: np.ndarray, sr: int, embed: IdentityEmbedder) -> dict:
    """Render the speech with the default animator and measure identity, mouth flatness, flicker, lip sync, fps."""
    from nodes.face.animator import DefaultAnimator
    from nodes.face.prepare import prepare_avatar

    lipsync = load_lipsync()
    face = prepare_avatar(photo)
    animator = DefaultAnimator(face, seed=1)
    cpu0 = time.process_time()
    frames, secs = lipsync.render_utterance(animator, audio, sr)
    cpu = time.process_time() - cpu0
    db, gap = lipsync.frame_loudness(frames), lipsync.lip_gaps(frames)
    agreement, lag, r = lipsync.score(db, gap)
    box = _face_box(face)
    ref = embed(face.image, box)
    sims = [float(ref @ embed(f.image, box)) for f in frames[::3]]
    roi = mouth_roi(face)
    src_flat = flatness(face.image, roi)
    ok = ~np.isnan(gap)
    open_idx = [k for k in np.argsort(np.where(ok, gap, -1))[::-1][: max(1, len(frames) // 5)]]
    frame_flat = float(np.mean([flatness(frames[k].image, roi) for k in open_idx]))
    return {"portrait": name, "frames": len(frames), "fps": len(frames) / secs, "fps_per_cpu_second": len(frames) / cpu,
            "identity_mean": float(np.mean(sims)), "identity_min": float(np.min(sims)),
            "mouth_flatness_photo": src_flat, "mouth_flatness_open": frame_flat,
            "flatness_ratio": frame_flat / max(src_flat, 0.01), "flicker": flicker(frames, face),
            "lipsync_agreement": agreement, "lag_frames": lag, "r": r,
            "_face": face, "_frames": frames, "_gap": gap, "_animator": animator}


def mouth_sheet(runs: list[dict], path: Path) -> None:
    """Per portrait one row at 2x zoom: the photo's mouth, the rendered mouth at four measured openings (25, 50, 75,
    100 % of the run's range) and a blink (eyes)."""
    import cv2
    from PIL import Image

    from nodes.face.animator.drive import FrameControls
    from nodes.face.animator.rig import CONTROLS

    rows = []
    for run in runs:
        face, frames, gap = run["_face"], run["_frames"], run["_gap"]
        x0, y0, x1, y1 = mouth_roi(face)
        cx, cy, half_w, half_h = (x0 + x1) // 2, (y0 + y1) // 2, 80, 56
        crop = lambda img: cv2.resize(  # noqa: E731
            img[max(0, cy - half_h):cy + half_h, max(0, cx - half_w):cx + half_w], (4 * half_w, 4 * half_h),
            interpolation=cv2.INTER_CUBIC)
        ok = np.where(~np.isnan(gap))[0]
        order = ok[np.argsort(gap[ok])]
        picks = [order[min(len(order) - 1, int(q * (len(order) - 1)))] for q in (0.25, 0.5, 0.75, 1.0)]
        tiles = [crop(face.image)] + [crop(frames[k].image) for k in picks]
        amps = np.zeros(len(CONTROLS), np.float32)
        amps[CONTROLS.index("blink")] = 1.0
        blink = run["_animator"].renderer.render(FrameControls(amps=amps))
        ex0, ey0, ex1, ey1 = face.boxes["eyes"]
        ecx, ecy = (ex0 + ex1) // 2, (ey0 + ey1) // 2
        eye = blink[max(0, ecy - half_h):ecy + half_h, max(0, ecx - 2 * half_w):ecx + 2 * half_w]
        tiles.append(cv2.resize(eye, (4 * half_w, 2 * half_h), interpolation=cv2.INTER_AREA))
        tiles[-1] = np.concatenate([tiles[-1], np.full((2 * half_h, 4 * half_w, 3), 255, np.uint8)], 0)
        label = np.full((28, 4 * half_w * len(tiles), 3), 255, np.uint8)
        text = (f"{run['portrait']} ({_group(run['portrait'])}): photo | openings "
                f"25/50/75/100 % | blink   identity {run['identity_mean']:.3f}, flatness "
                f"{run['mouth_flatness_open']:.3f} vs photo {run['mouth_flatness_photo']:.3f}")
        cv2.putText(label, text, (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
        rows.append(np.concatenate([label, np.concatenate(tiles, 1)], 0))
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(rows, 0)).save(path, optimize=True)


def _group(name: str) -> str:
    return "blind" if name in BLIND else "held back" if name in HELD_BACK else "tuning set"


def quality(seconds: float, sheets: bool, log=print, only: tuple[str, ...] = (),
            sheet_dir: Path | None = None) -> dict:
    """Identity, mouth flatness, flicker, lip sync and fps of the default animator on every benchmark portrait
    (or ``only`` those); the tuning set, the held-back and the blind portraits are summarised apart. Sheets go to
    ``sheet_dir`` (default docs/)."""
    audio, sr = speech(seconds)
    embed = IdentityEmbedder()
    runs = []
    for name, (photo, source) in benchmark_portraits().items():
        if only and name not in only:
            continue
        run = quality_run(name, photo, audio, sr, embed)
        runs.append(run)
        log(f"{name:24s} identity {run['identity_mean']:.3f} (min {run['identity_min']:.3f})  mouth flatness "
            f"{run['mouth_flatness_open']:.3f} vs photo {run['mouth_flatness_photo']:.3f} (ratio "
            f"{run['flatness_ratio']:.2f})  flicker {run['flicker']:.2f}  lip sync {run['lipsync_agreement'] * 100:.1f}%"
            f" lag {run['lag_frames']:+d}  {run['fps']:.0f} fps ({run['fps_per_cpu_second']:.0f}/CPU-s)   [{source}]")
    groups = ("tuning set", "held back", "blind")
    if sheets:
        out = sheet_dir or ROOT / "docs"
        paths = {"tuning set": out / "face_mouths.png", "held back": out / "face_mouths_held_back.png",
                 "blind": out / "face_mouths_blind.png"}
        for group in groups:
            rs = [r for r in runs if _group(r["portrait"]) == group]
            if rs:
                mouth_sheet(rs, paths[group])
                log(f"contact sheet ({group}): {paths[group]}")
    public = [{k: v for k, v in r.items() if not k.startswith("_")} for r in runs]

    def summary(rs: list[dict]) -> dict:
        return {"portraits": [r["portrait"] for r in rs],
                "identity_mean": float(np.mean([r["identity_mean"] for r in rs])),
                "identity_min_portrait": min(r["identity_mean"] for r in rs),
                "flatness_ratio_max": max(r["flatness_ratio"] for r in rs),
                "flicker_max": max(r["flicker"] for r in rs),
                "lipsync_agreement_min": min(r["lipsync_agreement"] for r in rs),
                "lag_max_abs": max(abs(r["lag_frames"]) for r in rs),
                "fps_median": float(np.median([r["fps"] for r in rs])),
                "fps_per_cpu_second_median": float(np.median([r["fps_per_cpu_second"] for r in rs]))}

    results: dict = {"per_portrait": public}
    for label in groups:
        rs = [r for r in public if _group(r["portrait"]) == label]
        s = summary(rs) if rs else {}
        results[label.replace(" ", "_")] = s
        if s:
            log(f"{label}: identity mean {s['identity_mean']:.3f} (lowest portrait {s['identity_min_portrait']:.3f}; "
                f"target >= 0.93), mouth flatness ratio <= {s['flatness_ratio_max']:.2f} (target <= 1.5), lip sync >= "
                f"{s['lipsync_agreement_min'] * 100:.1f}% (target 97), |lag| <= {s['lag_max_abs']} (target 1), "
                f"flicker <= {s['flicker_max']:.2f} grey levels, {s['fps_median']:.0f} fps median (target >= 50; "
                f"{s['fps_per_cpu_second_median']:.0f} frames per CPU-second)")
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--skip-neural", action="store_true", help="only the default animator")
    ap.add_argument("--seconds", type=float, default=10.0, help="audio per default-animator run")
    ap.add_argument("--quality", action="store_true", help="identity, mouth flatness, flicker, lip sync on every "
                    "benchmark portrait (needs dlib-bin, face-recognition-models; insightface for four of them)")
    ap.add_argument("--sheets", action="store_true", help="with --quality: write the 2x mouth contact sheets to "
                    "docs/face_mouths.png, docs/face_mouths_held_back.png, docs/face_mouths_blind.png")
    ap.add_argument("--quality-seconds", type=float, default=4.0, help="speech per portrait for --quality")
    ap.add_argument("--only", nargs="*", default=(), help="with --quality: only these portraits")
    ap.add_argument("--sheet-dir", type=Path, help="with --sheets: write the sheets here instead of docs/")
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
    if args.quality:
        results["quality"] = quality(args.quality_seconds, args.sheets, only=tuple(args.only),
                                     sheet_dir=args.sheet_dir)
        results["load_average_1min_at_end"] = os.getloadavg()[0]
        print(f"load average at the end {os.getloadavg()[0]:.1f}")
        print(json.dumps(results))
        return
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
