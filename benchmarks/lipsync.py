"""Lip-sync benchmark: does the rendered mouth follow the voice?

Speech is made with espeak-ng (English and Russian), streamed in uneven chunks through a face backend, and the
rendered frames are measured with MediaPipe face mesh (tracking mode), independently of the animator:

* lip gap = distance of the inner-lip midpoints (landmarks 13, 14) / interocular distance, per frame;
* voice-active = the frame's own audio (``Frame.audio``) is louder than (utterance peak - 30 dB);
* speech envelope = the frame's loudness in dB above (peak - 40 dB), floored at 0;
* mouth-open = lip gap above rest + 15 % of (95th percentile - rest), rest = median gap of silent frames.

Figures (pooled over all utterances of a portrait, and the worst utterance): (a) agreement of mouth-open with
voice-active, (b) the lag of the cross-correlation peak of envelope and lip gap, in frames, (c) Pearson r of
envelope and lip gap. Targets: (a) >= 97 %, (b) |lag| <= 1 frame, (c) r >= 0.9.

Run: ``.venv/bin/python benchmarks/lipsync.py [--backend default] [--quick] [--face-portraits [NAME ...]]``; the last
line printed is JSON.
Needs espeak-ng (``flock /tmp/apt.lock apt-get install -y espeak-ng``).
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # first: benchmarks/engine.py must not shadow the engine package

UTTERANCES: tuple[tuple[str, str], ...] = (
    ("en", "Hello, my name is Anna and I am happy to meet you."),
    ("en", "The quick brown fox jumps over the lazy dog."),
    ("en", "Could you tell me the way to the railway station, please?"),
    ("en", "We will start the meeting at nine o'clock tomorrow morning."),
    ("en", "I think this idea is really wonderful."),
    ("en", "Please remember to buy some bread and milk."),
    ("ru", "Привет, меня зовут Анна, и я рада тебя видеть."),
    ("ru", "Сегодня отличная погода для прогулки в парке."),
    ("ru", "Скажите, пожалуйста, как пройти к вокзалу?"),
    ("ru", "Мы начнём встречу завтра в девять часов утра."),
    ("ru", "Я думаю, что это очень хорошая идея."),
    ("ru", "Не забудь купить хлеб и молоко."),
)
PAD_SECONDS = 0.5  # silence before and after each utterance
VOICE_RANGE_DB = 30.0
ENVELOPE_RANGE_DB = 40.0
OPEN_FRACTION = 0.15
MAX_LAG = 6


# ------------------------------------------------------------------------------------------------ inputs

def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None


def synthesize(text: str, lang: str, workdir: Path) -> tuple[np.ndarray, int]:
    """Speech from espeak-ng (female voice variant), as float32 mono and its sample rate."""
    import soundfile as sf

    if not espeak_available():
        raise RuntimeError("espeak-ng is missing: flock /tmp/apt.lock apt-get install -y espeak-ng")
    path = workdir / f"utt_{abs(hash((text, lang))) % 10**8}.wav"
    subprocess.run(["espeak-ng", "-v", f"{lang}+f3", "-s", "155", "-w", str(path), text], check=True,
                   capture_output=True)
    samples, sr = sf.read(path, dtype="float32", always_2d=False)
    if samples.ndim > 1:
        samples = samples.mean(1)
    return samples.astype(np.float32), int(sr)


def portraits() -> dict[str, np.ndarray]:
    """Three portraits with usable licences from installed packages: NASA's astronaut (scikit-image, public
    domain), Grace Hopper (matplotlib sample data, public domain), and a derived one made here from the astronaut
    (mirrored, rotated 8 degrees, smaller, warmer, on a larger canvas: a different pose and framing)."""
    import cv2
    import matplotlib.cbook
    import skimage.data

    from nodes.face.prepare import load_photo

    astronaut = skimage.data.astronaut()
    hopper = load_photo(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    flipped = astronaut[:, ::-1]
    m = cv2.getRotationMatrix2D((256, 200), 8.0, 1.0)
    m[:, 2] += (190, 60)
    canvas = cv2.warpAffine(np.ascontiguousarray(flipped), m, (900, 640), flags=cv2.INTER_CUBIC,
                            borderMode=cv2.BORDER_REPLICATE)
    warm = np.clip(canvas.astype(np.float32) * (1.06, 1.0, 0.9), 0, 255).astype(np.uint8)
    return {"astronaut": astronaut, "grace_hopper": hopper, "astronaut_tilted": warm}


# ------------------------------------------------------------------------------------------------ measuring

@dataclass
class UtteranceResult:
    portrait: str
    lang: str
    text: str
    frames: int
    agreement: float
    lag_frames: int
    r: float
    render_fps: float


def render_utterance(backend, samples: np.ndarray, sr: int, seed: int = 0):
    """Stream the audio (padded with silence) through the backend in uneven chunks; returns the frames."""
    from nodes.face.stream import FramePump

    pad = np.zeros(int(PAD_SECONDS * sr), np.float32)
    audio = np.concatenate([pad, samples, pad])
    rng = np.random.default_rng(seed)
    pump = FramePump(backend)
    frames = []
    pos = 0
    t0 = time.perf_counter()
    while pos < len(audio):
        n = int(rng.uniform(0.15, 0.7) * sr)
        frames += pump.audio(audio[pos:pos + n], sr, pos / sr)
        pos += n
    frames += pump.finish()
    return frames, time.perf_counter() - t0


def lip_gaps(frames) -> np.ndarray:
    """Inner-lip gap / interocular distance per frame, measured by MediaPipe (NaN where no face was found)."""
    from nodes.face import avatar as A
    from nodes.face.prepare import LandmarkTracker

    tracker = LandmarkTracker()
    out = np.full(len(frames), np.nan)
    try:
        for k, f in enumerate(frames):
            lm = tracker(f.image)
            if lm is None:
                continue
            io = np.linalg.norm(lm[list(A.LEFT_EYE)].mean(0) - lm[list(A.RIGHT_EYE)].mean(0))
            out[k] = np.linalg.norm(lm[13] - lm[14]) / io
    finally:
        tracker.close()
    return out


def frame_loudness(frames) -> np.ndarray:
    db = []
    for f in frames:
        a = f.audio if f.audio is not None else np.zeros(1, np.float32)
        rms = float(np.sqrt(np.mean(np.square(a, dtype=np.float64)))) if a.size else 0.0
        db.append(20 * np.log10(rms + 1e-9))
    return np.array(db)


def score(db: np.ndarray, gap: np.ndarray) -> tuple[float, int, float]:
    """(agreement, lag in frames, Pearson r) of one sequence (or several concatenated)."""
    ok = ~np.isnan(gap)
    db, gap = db[ok], gap[ok]
    peak = db.max()
    active = db > max(peak - VOICE_RANGE_DB, -60.0)
    env = np.clip(db - (peak - ENVELOPE_RANGE_DB), 0.0, None)
    rest = float(np.median(gap[~active])) if (~active).any() else float(gap.min())
    top = float(np.percentile(gap, 95))
    mouth_open = gap > rest + OPEN_FRACTION * (top - rest)
    agreement = float(np.mean(mouth_open == active))
    e = (env - env.mean()) / (env.std() + 1e-9)
    g = (gap - gap.mean()) / (gap.std() + 1e-9)
    lags = range(-MAX_LAG, MAX_LAG + 1)
    xc = [float(np.mean(e[max(0, -L):len(e) - max(0, L)] * g[max(0, L):len(g) - max(0, -L)])) for L in lags]
    lag = list(lags)[int(np.argmax(xc))]  # > 0: the lips follow the voice late
    r = float(np.corrcoef(env, gap)[0, 1])
    return agreement, lag, r


def run(backend_name: str = "default", utterances=UTTERANCES, portrait_names: tuple[str, ...] | None = None,
        workdir: Path | None = None, log=print, photos: dict[str, np.ndarray] | None = None) -> dict:
    from nodes.face.nodes import make_backend
    from nodes.face.prepare import prepare_avatar

    workdir = Path(workdir or tempfile.mkdtemp(prefix="lipsync_"))
    speech = [(lang, text, *synthesize(text, lang, workdir)) for lang, text in utterances]
    results: list[UtteranceResult] = []
    pooled: dict[str, dict] = {}
    for name, photo in (photos or portraits()).items():
        if portrait_names and name not in portrait_names:
            continue
        face = prepare_avatar(photo)
        dbs, gaps = [], []
        for k, (lang, text, samples, sr) in enumerate(speech):
            backend = make_backend(backend_name, face, None, seed=k)
            frames, secs = render_utterance(backend, samples, sr, seed=k)
            db, gap = frame_loudness(frames), lip_gaps(frames)
            a, lag, r = score(db, gap)
            res = UtteranceResult(name, lang, text, len(frames), a, lag, r, len(frames) / secs)
            results.append(res)
            dbs.append(db)
            gaps.append(gap)
            log(f"{name:17s} {lang} agree {a * 100:5.1f}%  lag {lag:+d}  r {r:.3f}  {res.render_fps:6.1f} fps  "
                f"{text[:40]}")
        a, lag, r = score(np.concatenate(dbs), np.concatenate(gaps))
        pooled[name] = {"agreement": a, "lag_frames": lag, "r": r}
        log(f"{name:17s} pooled: agreement {a * 100:.1f}%, lag {lag:+d} frames, r {r:.3f}")
    summary = {
        "backend": backend_name,
        "utterances": len(utterances),
        "portraits": len(pooled),
        "languages": sorted({u[0] for u in utterances}),
        "agreement_pooled_min": min(p["agreement"] for p in pooled.values()),
        "lag_pooled_max_abs": max(abs(p["lag_frames"]) for p in pooled.values()),
        "r_pooled_min": min(p["r"] for p in pooled.values()),
        "agreement_utterance_mean": float(np.mean([x.agreement for x in results])),
        "agreement_utterance_min": min(x.agreement for x in results),
        "lag_utterance_max_abs": max(abs(x.lag_frames) for x in results),
        "r_utterance_mean": float(np.mean([x.r for x in results])),
        "r_utterance_min": min(x.r for x in results),
        "render_fps_median": float(np.median([x.render_fps for x in results])),
        "per_portrait": pooled,
        "per_utterance": [asdict(x) for x in results],
    }
    summary["pass"] = (summary["agreement_pooled_min"] >= 0.97 and summary["lag_pooled_max_abs"] <= 1
                       and summary["r_pooled_min"] >= 0.9)
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", default="default", choices=["default", "wav2lip", "sadtalker"])
    ap.add_argument("--quick", action="store_true", help="2 utterances (en, ru), 1 portrait")
    ap.add_argument("--face-portraits", nargs="*", metavar="NAME", help="the face benchmark's portraits instead "
                    "(benchmarks/face_portraits.py): all of them, or the ones named")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    utts = (UTTERANCES[0], UTTERANCES[6]) if args.quick else UTTERANCES
    names = ("astronaut",) if args.quick else None
    photos = None
    if args.face_portraits is not None:
        import importlib.util

        path = ROOT / "benchmarks" / "face_portraits.py"
        spec = importlib.util.spec_from_file_location("face_portraits_benchmark", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        photos = {k: v[0] for k, v in module.benchmark_portraits(sys.modules[__name__]).items()}
        names = tuple(args.face_portraits) or None
    summary = run(args.backend, utts, names, photos=photos)
    print(f"date {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; 2-core CPU, no GPU")
    print(f"pooled: agreement >= {summary['agreement_pooled_min'] * 100:.1f}% (target 97), "
          f"|lag| <= {summary['lag_pooled_max_abs']} frame(s) (target 1), r >= {summary['r_pooled_min']:.3f} "
          f"(target 0.9); pass={summary['pass']}")
    brief = {k: v for k, v in summary.items() if k != "per_utterance"}
    print(json.dumps(brief))


if __name__ == "__main__":
    main()
