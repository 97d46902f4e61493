"""``python main.py voice prepare DIR --name NAME`` and ``python main.py voice train NAME``.

prepare: recordings -> VAD-cut utterances (Silero ``VoiceActivityDetector`` from ``nodes.listen.vad``) -> Whisper
transcripts (``nodes.listen``) -> a coqui ``ljspeech``-format dataset (``metadata.csv`` + 22.05 kHz ``wavs/``) in
``<data>/user/voices/NAME/``, rejecting clipped, noisy, music-only, too short and wrong-language material.

train: fine-tunes the GPT part of XTTS with coqui's ``GPTTrainer`` from a base checkpoint
(``models/xtts/<base>/``, by default ``models/xtts/xtts-v2/``: model.pth, config.json, vocab.json, dvae.pth, mel_stats.pth); resumable (re-running
continues the last run in ``models/xtts/NAME/training/``), with a progress bar; writes ``models/xtts/NAME/``
(model.pth, config.json, vocab.json, reference.wav), which the XTTS node loads.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import shutil
import sys
import tempfile
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engine.files.folders import AUDIO_EXTENSIONS, folders
from nodes.common.audio import resample

log = logging.getLogger(__name__)

DATASET_RATE = 22050
VAD_RATE = 16000
MIN_SEGMENT_S = 1.0
MAX_SEGMENT_S = 11.0  # XTTS GPTTrainer's max_wav_length is ~11.6 s
CLIP_LEVEL = 0.99
MAX_CLIPPED_FRACTION = 0.001
MIN_SNR_DB = 15.0
MIN_SPEECH_RATIO = 0.3
BASE_FILES = ("model.pth", "config.json", "vocab.json", "dvae.pth", "mel_stats.pth")


# --------------------------------------------------------------------------------------------------- prepare


@dataclass
class PrepareReport:
    name: str
    language: str
    dataset: Path
    clips: int
    usable_seconds: float
    rejected: dict[str, int] = field(default_factory=dict)  # reason -> count
    rejected_files: list[tuple[str, str]] = field(default_factory=list)  # (file or segment, reason)
    target: Path | None = None  # the adaptation target (F0 statistics, mean envelope) for the default voice

    @property
    def usable_minutes(self) -> float:
        return self.usable_seconds / 60

    def summary(self) -> str:
        lines = [f"voice {self.name!r} ({self.language}): {self.clips} clips, {self.usable_minutes:.2f} usable "
                 f"minutes -> {self.dataset}"]
        for what, why in self.rejected_files:
            lines.append(f"  rejected {what}: {why}")
        if self.usable_minutes < 5:
            lines.append("  note: 5-10 minutes of speech are recommended for fine-tuning")
        if self.target is not None:
            lines.append(f"  default-voice target: {self.target} (use it with `voice: {{reference: "
                         f"\"voice:{self.name}\"}}` in a persona file; no XTTS weights needed)")
        return "\n".join(lines)


def dataset_dir(name: str) -> Path:
    return folders.get("user") / "voices" / name


def _frame_rms(samples: np.ndarray, rate: int, frame_s: float = 0.03) -> np.ndarray:
    n = max(int(rate * frame_s), 1)
    frames = len(samples) // n
    if frames == 0:
        return np.zeros(1)
    return np.sqrt(np.mean(samples[: frames * n].reshape(frames, n).astype(np.float64) ** 2, axis=1)) + 1e-9


def spectral_flatness(samples: np.ndarray, n_fft: int = 1024) -> float:
    """Mean spectral flatness (geometric / arithmetic mean of the power spectrum): ~1 for noise, ~0 for tones."""
    frames = len(samples) // n_fft
    if frames == 0:
        return 0.0
    spec = np.abs(np.fft.rfft(samples[: frames * n_fft].reshape(frames, n_fft) * np.hanning(n_fft), axis=1)) ** 2
    spec = spec + 1e-12
    return float(np.mean(np.exp(np.mean(np.log(spec), axis=1)) / np.mean(spec, axis=1)))


def file_problem(samples: np.ndarray, rate: int, speech_seconds: float) -> str | None:
    """A reason to reject a whole recording, or None."""
    if samples.size == 0 or float(np.max(np.abs(samples))) < 1e-3:
        return "silent"
    clipped = float(np.mean(np.abs(samples) >= CLIP_LEVEL))
    if clipped > MAX_CLIPPED_FRACTION:
        return f"clipping ({clipped:.1%} of samples at full scale)"
    rms = _frame_rms(samples, rate)
    loud = rms > rms.max() * 10 ** (-40 / 20)
    sounding = float(loud.sum()) * 0.03
    if sounding > 0 and speech_seconds / sounding < MIN_SPEECH_RATIO:
        kind = "noise" if spectral_flatness(samples) > 0.3 else "music"
        return (f"{kind} (speech in only {speech_seconds:.1f} s of {sounding:.1f} s of sound; "
                f"record speech alone)")
    snr = 20 * np.log10(np.percentile(rms, 95) / np.percentile(rms, 10))
    if snr < MIN_SNR_DB:
        return f"noisy (signal-to-noise {snr:.0f} dB < {MIN_SNR_DB:.0f} dB)"
    return None


def _segments(samples16: np.ndarray) -> list[tuple[float, float]]:
    """(start, end) seconds of the utterances the VAD finds."""
    from nodes.listen.vad import TurnEnded, VADConfig, VoiceActivityDetector

    vad = VoiceActivityDetector(VADConfig(min_silence_ms=300.0, speech_pad_ms=150.0, max_turn_s=MAX_SEGMENT_S,
                                          partial_interval_ms=10_000.0))
    events = vad.push(samples16.astype(np.float32)) + vad.flush()
    return [(e.start, e.end) for e in events if isinstance(e, TurnEnded)]


def _read(path: Path) -> tuple[np.ndarray, int]:
    import soundfile as sf

    samples, rate = sf.read(path, dtype="float32", always_2d=True)
    return samples.mean(axis=1), int(rate)


def prepare(source: Path, name: str, language: str = "auto", asr: Any = None) -> PrepareReport:
    """Build the dataset for voice ``name`` from the recordings in ``source``."""
    if not source.is_dir():
        raise FileNotFoundError(f"{source} is not a folder of recordings")
    files = sorted(p for p in source.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS)
    if not files:
        raise FileNotFoundError(f"no recordings ({', '.join(sorted(AUDIO_EXTENSIONS))}) in {source}")
    if asr is None:
        from nodes.listen.backends import FasterWhisperBackend
        from nodes.listen.weights import locate

        asr = FasterWhisperBackend(locate("whisper-base").path)
    allowed = ("ru", "en") if language == "auto" else (language,)
    final = dataset_dir(name)
    final.parent.mkdir(parents=True, exist_ok=True)
    for stale in final.parent.glob(f".{name}.partial-*"):  # left by a killed run
        shutil.rmtree(stale, ignore_errors=True)
    # built aside and renamed into place at the end: a crash or Ctrl-C never leaves a half dataset (and an older
    # dataset of the same name stays whole until the new one is complete)
    out = Path(tempfile.mkdtemp(prefix=f".{name}.partial-", dir=final.parent))
    try:
        report = _build_dataset(files, name, language, allowed, asr, out, final)
        _replace_dir(out, final)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise
    return report


def _replace_dir(built: Path, final: Path) -> None:
    """Put the folder ``built`` at ``final`` (same parent), replacing what was there."""
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{built.name.rsplit('-', 1)[-1]}")
        final.rename(old)
    try:
        built.rename(final)
    except BaseException:
        if old is not None:
            old.rename(final)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _build_dataset(files: list[Path], name: str, language: str, allowed: tuple[str, ...], asr: Any, out: Path,
                   final: Path) -> PrepareReport:
    """The dataset of ``name`` written into ``out``; paths in its report and dataset.json name ``final``."""
    import soundfile as sf
    from tqdm import tqdm

    (out / "wavs").mkdir(parents=True)
    rejected: list[tuple[str, str]] = []
    kept: list[tuple[str, str, str, float]] = []  # (id, text, language, seconds)
    for path in tqdm(files, desc="recordings", unit="file"):
        samples, rate = _read(path)
        samples16 = resample(samples, rate, VAD_RATE)
        segments = _segments(samples16) if samples.size else []
        speech = sum(e - s for s, e in segments)
        problem = file_problem(samples, rate, speech)
        if problem is None and not segments:
            problem = "no speech found"
        if problem is not None:
            rejected.append((path.name, problem))
            continue
        for index, (start, end) in enumerate(segments):
            label = f"{path.name}@{start:.1f}s"
            if end - start < MIN_SEGMENT_S:
                rejected.append((label, f"too short ({end - start:.1f} s < {MIN_SEGMENT_S:.0f} s)"))
                continue
            piece16 = samples16[int(start * VAD_RATE): int(end * VAD_RATE)]
            heard = asr.transcribe(piece16, ("ru", "en"))
            text = " ".join(heard.text.split())
            if heard.language not in allowed:
                rejected.append((label, f"wrong language ({heard.language}, expected {'/'.join(allowed)})"))
                continue
            if not text or heard.no_speech_prob > 0.6:
                rejected.append((label, "no intelligible speech"))
                continue
            clip_id = f"{name}_{len(kept) + 1:05d}"
            piece = resample(samples[int(start * rate): int(end * rate)], rate, DATASET_RATE)
            sf.write(out / "wavs" / f"{clip_id}.wav", piece, DATASET_RATE, subtype="PCM_16")
            kept.append((clip_id, text.replace("|", " "), heard.language, len(piece) / DATASET_RATE))
    if language == "auto":
        counts = Counter(lang for *_, lang, _ in kept)
        language = counts.most_common(1)[0][0] if counts else "en"
        for clip_id, _, lang, _ in [k for k in kept if k[2] != language]:
            (out / "wavs" / f"{clip_id}.wav").unlink()
            rejected.append((clip_id, f"wrong language ({lang}, most of the voice is {language})"))
        kept = [k for k in kept if k[2] == language]
    (out / "metadata.csv").write_text("".join(f"{i}|{t}|{t}\n" for i, t, _, _ in kept), encoding="utf-8")
    target = None
    if kept:
        from nodes.speak.adapt import NotEnoughSpeech
        from nodes.speak.voice_target import target_from_dataset

        try:
            target = final / target_from_dataset(name, out).name
        except NotEnoughSpeech as exc:
            rejected.append(("default-voice target", str(exc)))
    report = PrepareReport(name=name, language=language, dataset=final, clips=len(kept),
                           usable_seconds=sum(s for *_, s in kept),
                           rejected=dict(Counter(why.split(" (")[0] for _, why in rejected)), rejected_files=rejected,
                           target=target)
    (out / "dataset.json").write_text(json.dumps({**asdict(report), "dataset": str(final),
                                                  "target": str(target) if target else None}, ensure_ascii=False,
                                                 indent=1), encoding="utf-8")
    return report


# ----------------------------------------------------------------------------------------------------- train


@dataclass
class TrainReport:
    name: str
    output: Path
    steps: int
    losses: list[float]  # mean training loss per epoch
    resumed: bool


def _last_run(training: Path) -> Path | None:
    runs = sorted((p for p in training.glob("*") if p.is_dir() and list(p.glob("*.pth"))),
                  key=lambda p: p.stat().st_mtime)
    return runs[-1] if runs else None


def train(name: str, base: str = "xtts-v2", epochs: int = 10, batch_size: int = 2, lr: float = 5e-6,
          restart: bool = False, grad_accum: int = 1, progress: bool = True) -> TrainReport:
    """Fine-tune XTTS's GPT on the prepared dataset of ``name``; writes ``models/xtts/NAME/``."""
    import torch
    from tqdm import tqdm
    from trainer import Trainer, TrainerArgs
    from TTS.config.shared_configs import BaseDatasetConfig
    from TTS.tts.configs.xtts_config import XttsAudioConfig, XttsConfig
    from TTS.tts.datasets import load_tts_samples
    from TTS.tts.layers.xtts.trainer.gpt_trainer import GPTArgs, GPTTrainer, GPTTrainerConfig

    from nodes.speak.backends.xtts import checkpoint_dir

    data = dataset_dir(name)
    meta = data / "dataset.json"
    if not meta.is_file():
        raise FileNotFoundError(f"no prepared dataset for voice {name!r} in {data}; run "
                                f"`python main.py voice prepare DIR --name {name}` first")
    language = json.loads(meta.read_text(encoding="utf-8"))["language"]
    base_dir = checkpoint_dir(base)
    absent = [f for f in BASE_FILES if not (base_dir / f).is_file()]
    if absent:
        raise FileNotFoundError(f"the base XTTS checkpoint folder {base_dir} lacks {', '.join(absent)}; put the "
                                f"XTTS-v2 release files there ({', '.join(BASE_FILES)})")
    out = folders.models("xtts") / name
    training = out / "training"
    training.mkdir(parents=True, exist_ok=True)
    previous = None if restart else _last_run(training)

    base_config = XttsConfig()
    base_config.load_json(str(base_dir / "config.json"))
    fields = set(GPTArgs.__dataclass_fields__)
    args = GPTArgs(**{k: v for k, v in base_config.model_args.to_dict().items() if k in fields})
    args.xtts_checkpoint = str(base_dir / "model.pth")
    args.dvae_checkpoint = str(base_dir / "dvae.pth")
    args.mel_norm_file = str(base_dir / "mel_stats.pth")
    args.tokenizer_file = str(base_dir / "vocab.json")
    args.max_wav_length = int(MAX_SEGMENT_S * 1.05 * DATASET_RATE)
    n_clips = sum(1 for _ in (data / "metadata.csv").open(encoding="utf-8"))
    steps_per_epoch = max(math.ceil(n_clips / batch_size), 1)
    config = GPTTrainerConfig(
        output_path=str(training), run_name=f"xtts-{name}", model_args=args,
        audio=XttsAudioConfig(sample_rate=22050, dvae_sample_rate=22050, output_sample_rate=24000),
        epochs=epochs, batch_size=batch_size, eval_batch_size=batch_size, num_loader_workers=0,
        num_eval_loader_workers=0, run_eval=False, print_step=10**9, plot_step=10**9, log_model_step=10**9,
        save_step=1000, save_n_checkpoints=1, save_checkpoints=True, save_best_after=0,
        optimizer="AdamW", optimizer_wd_only_on_weights=True,
        optimizer_params={"betas": [0.9, 0.96], "eps": 1e-8, "weight_decay": 1e-2}, lr=lr,
        lr_scheduler="MultiStepLR", lr_scheduler_params={"milestones": [10**9], "gamma": 0.5, "last_epoch": -1},
        languages=[language], test_sentences=[], dashboard_logger="tensorboard", mixed_precision=False,
        datasets=[BaseDatasetConfig(formatter="ljspeech", dataset_name=name, path=str(data),
                                    meta_file_train="metadata.csv", language=language)])
    samples, _ = load_tts_samples(config, eval_split=False)
    model = GPTTrainer(config)

    history: list[tuple[int, float]] = []  # (epoch, running mean loss after each step)
    bar = tqdm(total=epochs * steps_per_epoch, desc=f"training {name}", unit="step", disable=not progress)

    def on_step_end(trainer: Any) -> None:
        avg = trainer.keep_avg_train.avg_values if trainer.keep_avg_train is not None else {}
        loss = float(avg.get("avg_loss", float("nan")))
        history.append((trainer.epochs_done, loss))
        bar.n = trainer.total_steps_done
        bar.set_postfix(loss=f"{loss:.3f}")
        bar.refresh()

    trainer = Trainer(TrainerArgs(continue_path=str(previous) if previous else "", grad_accum_steps=grad_accum),
                      config, output_path=str(training), model=model, train_samples=samples, eval_samples=None,
                      callbacks={"on_train_step_end": on_step_end}, parse_command_line_args=False, gpu=None)
    bar.total = max(bar.total, trainer.total_steps_done + (epochs - trainer.epochs_done) * steps_per_epoch)
    bar.n = trainer.total_steps_done
    trainer.fit()
    bar.close()

    state = {k: v for k, v in model.xtts.state_dict().items()
             if k.split(".")[0] not in ("torch_mel_spectrogram_style_encoder", "torch_mel_spectrogram_dvae", "dvae")}
    torch.save({"model": state}, out / "model.pth")
    shutil.copy(base_dir / "vocab.json", out / "vocab.json")
    export = XttsConfig()
    export.load_json(str(base_dir / "config.json"))
    export.model_args.tokenizer_file = "vocab.json"
    export.save_json(str(out / "config.json"))
    _write_reference(data, out / "reference.wav")
    per_epoch: dict[int, float] = {}
    for epoch, loss in history:
        per_epoch[epoch] = loss  # the last running mean of an epoch is that epoch's mean
    losses = [per_epoch[e] for e in sorted(per_epoch)]
    log_path = out / "training_log.json"
    old = json.loads(log_path.read_text()) if previous and log_path.is_file() else {"losses": []}
    (log_path).write_text(json.dumps({"losses": old["losses"] + losses, "steps": trainer.total_steps_done}))
    return TrainReport(name=name, output=out, steps=trainer.total_steps_done, losses=losses,
                       resumed=previous is not None)


def _write_reference(data: Path, target: Path, seconds: float = 12.0) -> None:
    """Concatenate the first dataset clips into a default reference clip for the trained voice."""
    import soundfile as sf

    parts, total = [], 0.0
    for wav in sorted((data / "wavs").glob("*.wav")):
        samples, rate = sf.read(wav, dtype="float32")
        parts.append(samples)
        total += len(samples) / rate
        if total >= seconds:
            break
    if parts:
        sf.write(target, np.concatenate(parts), DATASET_RATE, subtype="PCM_16")


# ------------------------------------------------------------------------------------------------------- CLI


def add_voice_cli(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``voice prepare`` and ``voice train`` to an argparse subparsers object; sets ``func(args) -> int``."""
    voice = subparsers.add_parser("voice", help="voice cloning: prepare a dataset, fine-tune XTTS")
    sub = voice.add_subparsers(dest="voice_command", required=True)
    p = sub.add_parser("prepare", help="cut, transcribe and check recordings into a dataset")
    p.add_argument("dir", type=Path, help="folder of recordings (5-10 minutes of one speaker)")
    p.add_argument("--name", required=True, help="voice name (dataset and models/xtts/NAME)")
    p.add_argument("--language", default="auto", choices=["auto", "ru", "en"])
    p.set_defaults(func=_run_prepare)
    t = sub.add_parser("train", help="fine-tune XTTS's GPT on a prepared voice (resumes a previous run)")
    t.add_argument("name")
    t.add_argument("--base", default="xtts-v2", help="base checkpoint folder in models/xtts/ (default: xtts-v2, the official release)")
    t.add_argument("--epochs", type=int, default=10)
    t.add_argument("--batch-size", type=int, default=2)
    t.add_argument("--grad-accum", type=int, default=1)
    t.add_argument("--lr", type=float, default=5e-6)
    t.add_argument("--restart", action="store_true", help="start over instead of resuming")
    t.set_defaults(func=_run_train)
    return voice


def _run_prepare(args: argparse.Namespace) -> int:
    report = prepare(args.dir, args.name, args.language)
    print(report.summary())  # noqa: T201 - command-line output
    return 0 if report.clips else 1


def _run_train(args: argparse.Namespace) -> int:
    report = train(args.name, base=args.base, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                   restart=args.restart, grad_accum=args.grad_accum)
    print(f"trained {report.steps} steps ({'resumed' if report.resumed else 'new run'}); "  # noqa: T201
          f"loss per epoch: {', '.join(f'{x:.3f}' for x in report.losses)}; wrote {report.output}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m nodes.speak.voice_cli prepare|train ...`` (the same as ``main.py voice ...``)."""
    parser = argparse.ArgumentParser(prog="voice")
    sub = parser.add_subparsers(dest="command", required=True)
    add_voice_cli(sub)
    words = list(sys.argv[1:] if argv is None else argv)
    if words[:1] != ["voice"]:
        words = ["voice", *words]
    args = parser.parse_args(words)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
