"""Coqui XTTS-v2 (coqui-tts 0.28): a user-supplied checkpoint in ``models/xtts/<voice>/``, speaker
conditioning from reference clips, and ``inference_stream`` so audio leaves before the sentence is done.

``write_random_checkpoint`` writes a small randomly initialised XTTS (real architecture, tiny GPT) in the
same folder layout; the tests and ``main.py voice train --init-random`` use it.
"""

from __future__ import annotations

import importlib.util
import json
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from engine.files.folders import folders
from nodes.common.audio import resample
from nodes.io.media import Audio
from nodes.speak.backends.base import BackendUnavailable, SpeechPiece, Synthesizer, TTSBackend
from nodes.speak.voice import Voice, XttsLatents

log = logging.getLogger(__name__)

REQUIRED_FILES = ("model.pth", "config.json", "vocab.json")
OPTIONAL_FILES = ("speakers_xtts.pth", "reference.wav")  # built-in speakers / a default reference clip
TRAINING_FILES = ("dvae.pth", "mel_stats.pth")  # needed only to fine-tune
LANGUAGES = ("ru", "en")


OFFICIAL_FOLDER = "xtts-v2"  # models/xtts/xtts-v2/: the manifest's id for the official release
ALIASES = {"default": OFFICIAL_FOLDER, "base": OFFICIAL_FOLDER}  # the node's default / training's base


def checkpoint_dir(voice_name: str) -> Path:
    """``models/xtts/<voice>/``; ``default`` and ``base`` name the official release in ``models/xtts/xtts-v2/``."""
    return folders.models("xtts") / ALIASES.get(voice_name, voice_name)


def missing_files(folder: Path) -> list[str]:
    return [name for name in REQUIRED_FILES if not (folder / name).is_file()]


def missing_message(folder: Path) -> str | None:
    absent = missing_files(folder)
    if not absent:
        return None
    return (f"the XTTS checkpoint folder {folder} lacks {', '.join(absent)}; put an XTTS-v2 checkpoint "
            f"there ({', '.join(REQUIRED_FILES)}, optionally {', '.join(OPTIONAL_FILES)}), or train one with "
            f"`python main.py voice train {folder.name}`")


def load_model(folder: Path) -> Any:
    """Load an XTTS checkpoint folder on CPU in eval mode."""
    message = missing_message(folder)
    if message is not None:
        raise BackendUnavailable(message)
    from TTS.tts.configs.xtts_config import XttsConfig
    from TTS.tts.models.xtts import Xtts

    config = XttsConfig()
    config.load_json(str(folder / "config.json"))
    model = Xtts(config)
    model.load_checkpoint(config, checkpoint_dir=str(folder), eval=True, use_deepspeed=False)
    model.eval()
    return model


def compute_latents(model: Any, clips: Sequence[Audio], checkpoint: str, gpt_cond_len: int = 6) -> XttsLatents:
    """XTTS speaker conditioning from reference clips (what ``get_conditioning_latents`` does, from memory)."""
    import torch

    sr = int(model.config.audio.sample_rate)  # 22050 for XTTS-v2
    tensors, embeddings = [], []
    with torch.inference_mode():
        for clip in clips:
            audio = torch.from_numpy(resample(clip.samples, clip.sample_rate, sr)).float()[None, :]
            audio = audio[:, : sr * 30]
            embeddings.append(model.get_speaker_embedding(audio, sr))
            tensors.append(audio)
        full = torch.cat(tensors, dim=-1)
        gpt_latent = model.get_gpt_cond_latents(full, sr, length=gpt_cond_len, chunk_length=gpt_cond_len)
        speaker = torch.stack(embeddings).mean(dim=0)
    return XttsLatents(checkpoint=checkpoint, gpt_cond_latent=gpt_latent.cpu().numpy().astype(np.float32),
                       speaker_embedding=speaker.cpu().numpy().astype(np.float32))


class XttsSynthesizer(Synthesizer):
    def __init__(self, folder: Path, language: str, stream_chunk_size: int = 20, name: str | None = None):
        self.folder = folder
        self.name = name or folder.name  # the voice name latents are tagged with ("default" -> xtts-v2/)
        self.language = language
        self.stream_chunk_size = stream_chunk_size
        self.model = load_model(folder)
        self.sample_rate = int(self.model.config.audio.output_sample_rate)
        limits = getattr(self.model.tokenizer, "char_limits", {}) or {}
        self.max_chars = int(limits.get(language, 200))
        self._default: XttsLatents | None = None

    def default_latents(self) -> XttsLatents:
        """Conditioning when no VOICE is given: the first built-in speaker, else ``reference.wav``."""
        if self._default is not None:
            return self._default
        manager = getattr(self.model, "speaker_manager", None)
        if manager is not None and getattr(manager, "speakers", None):
            name = next(iter(manager.speakers))
            gpt, spk = manager.speakers[name].values()
            self._default = XttsLatents(self.name, gpt.cpu().numpy(), spk.cpu().numpy())
        elif (self.folder / "reference.wav").is_file():
            import soundfile as sf

            samples, rate = sf.read(self.folder / "reference.wav", dtype="float32", always_2d=True)
            self._default = compute_latents(self.model, [Audio(samples.mean(axis=1), rate)], self.name)
        else:
            raise BackendUnavailable(
                f"XTTS needs a speaker: connect a VOICE (LoadVoice with reference clips) or put "
                f"speakers_xtts.pth or reference.wav into {self.folder}")
        return self._default

    def latents_for(self, clips: Sequence[Audio]) -> XttsLatents:
        return compute_latents(self.model, clips, self.name)

    def token_budget(self, sentence: str) -> int:
        """Most audio tokens for ``sentence``: about 3x normal speech (1.4 tokens per character), so a model that
        fails to emit its stop token babbles for a bounded time."""
        return int(min(self.model.gpt.max_gen_mel_tokens, 20 + 4 * len(sentence)))

    def speak(self, sentence: str, language: str, voice: Voice | None = None) -> Iterator[SpeechPiece]:
        import torch

        latents = voice.xtts if voice is not None and voice.xtts is not None else self.default_latents()
        gpt = torch.from_numpy(latents.gpt_cond_latent)
        spk = torch.from_numpy(latents.speaker_embedding)
        with torch.inference_mode():
            stream = self.model.inference_stream(sentence, language, gpt, spk,
                                                 stream_chunk_size=self.stream_chunk_size,
                                                 enable_text_splitting=False,
                                                 max_new_tokens=self.token_budget(sentence))
            previous = None
            for wav in stream:  # hold one chunk back so the last one can be marked final
                samples = wav.detach().cpu().numpy().astype(np.float32).reshape(-1)
                if previous is not None:
                    yield SpeechPiece(previous, self.sample_rate, final=False)
                previous = samples
            if previous is not None:
                yield SpeechPiece(previous, self.sample_rate, final=True)


class XttsBackend(TTSBackend):
    name = "xtts"
    languages = LANGUAGES
    streams_within_sentence = True
    quality: dict[str, int] = {}  # never picked by ``auto`` unless a VOICE carries XTTS latents

    def missing(self, language: str, voice_name: str = "default") -> str | None:
        if language not in self.languages:
            return f"xtts speaks {', '.join(self.languages)} here, not {language!r}"
        if importlib.util.find_spec("TTS") is None:
            return "coqui-tts is not installed (pip install coqui-tts==0.28.0; see requirements/tts.txt)"
        return missing_message(checkpoint_dir(voice_name))

    def load(self, language: str, voice_name: str = "default") -> XttsSynthesizer:
        self.check(language, voice_name)
        return XttsSynthesizer(checkpoint_dir(voice_name), language, name=voice_name)

    def size_bytes(self, language: str, voice_name: str = "default") -> int:
        path = checkpoint_dir(voice_name) / "model.pth"
        return int(path.stat().st_size * 1.2) if path.exists() else 2 * 2**30


# ------------------------------------------------------------------------------------------ random checkpoints

TINY_TEXT = (
    "hello my name is alice and the weather is nice today we are testing a small speech model "
    "привет меня зовут алиса сегодня хорошая погода мы проверяем маленькую модель речи "
    "abcdefghijklmnopqrstuvwxyz абвгдеёжзийклмнопрстуфхцчшщъыьэюя 0123456789 .,!?-'"
)


def write_vocab(path: Path, text: str = TINY_TEXT, vocab_size: int = 400) -> None:
    """A BPE ``vocab.json`` in XTTS's format (``[START]``, ``[STOP]``, ``[UNK]``, ``[SPACE]``, language tags)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    specials = ["[STOP]", "[UNK]", "[SPACE]", "[START]", *[f"[{lang}]" for lang in LANGUAGES]]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False)
    corpus = [line.replace(" ", "[SPACE]") for line in (text + " " + text.upper()).split(" ")] + [text]
    tokenizer.train_from_iterator(corpus, trainer=trainer)
    tokenizer.save(str(path))


def tiny_config(vocab_path: Path, seed_audio_tokens: int = 1026) -> Any:
    """An ``XttsConfig`` with the XTTS-v2 architecture but a 2-layer, 256-channel GPT and a short token cap."""
    from TTS.tts.configs.xtts_config import XttsAudioConfig, XttsConfig
    from TTS.tts.models.xtts import XttsArgs

    args = XttsArgs(gpt_layers=2, gpt_n_model_channels=256, gpt_n_heads=4, decoder_input_dim=256,
                    gpt_num_audio_tokens=seed_audio_tokens, gpt_start_audio_token=seed_audio_tokens - 2,
                    gpt_stop_audio_token=seed_audio_tokens - 1, gpt_max_audio_tokens=260, gpt_max_text_tokens=402,
                    gpt_use_perceiver_resampler=True, tokenizer_file=str(vocab_path))
    return XttsConfig(model_args=args, audio=XttsAudioConfig(sample_rate=22050, output_sample_rate=24000),
                      languages=list(LANGUAGES))


def write_random_checkpoint(folder: Path, seed: int = 0) -> Path:
    """Write a randomly initialised tiny XTTS (model.pth, config.json, vocab.json, dvae.pth, mel_stats.pth)."""
    import torch
    from TTS.tts.layers.xtts.dvae import DiscreteVAE
    from TTS.tts.layers.xtts.tokenizer import VoiceBpeTokenizer
    from TTS.tts.models.xtts import Xtts

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    write_vocab(folder / "vocab.json")
    config = tiny_config(folder / "vocab.json")
    model = Xtts(config)
    model.tokenizer = VoiceBpeTokenizer(vocab_file=str(folder / "vocab.json"))
    model.init_models()
    torch.save({"model": _half(model.state_dict())}, folder / "model.pth")  # fp16 on disk: half the bytes
    config.model_args.tokenizer_file = "vocab.json"
    config.save_json(str(folder / "config.json"))
    dvae = DiscreteVAE(channels=80, normalization=None, positional_dims=1,
                       num_tokens=config.model_args.gpt_num_audio_tokens - 2, codebook_dim=512, hidden_dim=512,
                       num_resnet_blocks=3, kernel_size=3, num_layers=2, use_transposed_convs=False)
    torch.save(_half(dvae.state_dict()), folder / "dvae.pth")
    torch.save(torch.ones(80), folder / "mel_stats.pth")
    (folder / "README.txt").write_text(json.dumps({"note": "randomly initialised tiny XTTS; it speaks noise"}))
    return folder


def _half(state: dict[str, Any]) -> dict[str, Any]:
    """Floating tensors as fp16 (``load_state_dict`` casts them back to the module's dtype)."""
    return {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
