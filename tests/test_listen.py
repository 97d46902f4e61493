"""MicInput, VAD and Whisper on speech synthesised at test time (espeak-ng English, Festival Russian).

Real whisper-base weights (a default model, installed by ``python main.py models install``) are used for the
recognition tests; the CTranslate2 -> openai-whisper converter is also tested on a small random model.
"""

from __future__ import annotations

import asyncio
import shutil
import struct
import subprocess
import threading
from pathlib import Path

import jiwer
import numpy as np
import pytest
import soundfile

from engine.graph import types as T
from engine.graph.context import NodeContext
from engine.graph.executor import Executor
from engine.files.folders import folders
from engine.graph.node import Input, Node, NodeResult
from engine.graph.registry import NodeRegistry
from nodes.common.audio import float_to_pcm16, load_audio, write_wav
from nodes.io.media import Audio

EN_1 = "Hello, how are you doing today?"
EN_2 = "I would like to order a pizza with mushrooms."
RU_1 = "Привет, как у тебя дела сегодня?"


def normalise(text: str) -> str:
    text = text.lower().replace("ё", "е")
    return " ".join("".join(ch if ch.isalnum() or ch.isspace() else " " for ch in text).split())


def wer(reference: str, hypothesis: str) -> float:
    return jiwer.wer(normalise(reference), normalise(hypothesis) or "<empty>")


def need(tool: str) -> None:
    if shutil.which(tool) is None:
        pytest.fail(f"{tool} is missing: apt-get install $(cat requirements/apt-asr.txt)")


def espeak(text: str, path: Path) -> Path:
    need("espeak-ng")
    subprocess.run(["espeak-ng", "-w", str(path), text], check=True, capture_output=True)
    return path


def festival_ru(text: str, path: Path) -> Path:
    need("text2wave")
    subprocess.run(["text2wave", "-eval", "(voice_msu_ru_nsh_clunits)", "-o", str(path)], input=text.encode(),
                   check=True, capture_output=True)
    return path


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("speech")
    out = {"en1": espeak(EN_1, d / "en1.wav"), "en2": espeak(EN_2, d / "en2.wav"),
           "ru1": festival_ru(RU_1, d / "ru1.wav")}
    silence = np.zeros(int(1.2 * 16000), dtype=np.float32)
    en1, en2 = load_audio(out["en1"]).samples, load_audio(out["en2"]).samples
    out["two"] = write_wav(d / "two.wav", Audio(np.concatenate([silence, en1, silence, en2, silence]), 16000))
    out["silence"] = write_wav(d / "silence.wav", Audio(np.zeros(3 * 16000, dtype=np.float32), 16000))
    # 8 kHz stereo version of en1
    stereo = load_audio(out["en1"], target_rate=8000).samples
    soundfile.write(str(d / "en1_8k_stereo.wav"), np.stack([stereo, stereo * 0.5], axis=1), 8000)
    out["en1_8k_stereo"] = d / "en1_8k_stereo.wav"
    return out


# ------------------------------------------------------------------------------------------------ converter
def _ct2_string(s: str) -> bytes:
    raw = s.encode() + b"\0"
    return struct.pack("<H", len(raw)) + raw


def write_ct2_whisper(path: Path, sd: dict[str, np.ndarray]) -> None:
    """Write an openai-whisper state dict in CTranslate2's Whisper layout (the inverse of our converter)."""
    v: dict[str, np.ndarray] = {}
    for i in (1, 2):
        v[f"encoder/conv{i}/weight"], v[f"encoder/conv{i}/bias"] = sd[f"encoder.conv{i}.weight"], sd[f"encoder.conv{i}.bias"]
    v["encoder/position_encodings/encodings"] = sd["encoder.positional_embedding"]

    def lin(dst, src, bias=True):
        v[f"{dst}/weight"] = sd[f"{src}.weight"]
        if bias:
            v[f"{dst}/bias"] = sd[f"{src}.bias"]

    def ln(dst, src):
        v[f"{dst}/gamma"], v[f"{dst}/beta"] = sd[f"{src}.weight"], sd[f"{src}.bias"]

    def fused(dst, srcs):
        v[f"{dst}/weight"] = np.concatenate([sd[f"{s}.weight"] for s in srcs])
        v[f"{dst}/bias"] = np.concatenate([sd[f"{s}.bias"] if f"{s}.bias" in sd else
                                           np.zeros(sd[f"{s}.weight"].shape[0], np.float32) for s in srcs])

    n_enc = len({k.split(".")[2] for k in sd if k.startswith("encoder.blocks.")})
    n_dec = len({k.split(".")[2] for k in sd if k.startswith("decoder.blocks.")})
    for i in range(n_enc):
        d, s = f"encoder/layer_{i}", f"encoder.blocks.{i}"
        fused(f"{d}/self_attention/linear_0", [f"{s}.attn.query", f"{s}.attn.key", f"{s}.attn.value"])
        lin(f"{d}/self_attention/linear_1", f"{s}.attn.out")
        ln(f"{d}/self_attention/layer_norm", f"{s}.attn_ln")
        lin(f"{d}/ffn/linear_0", f"{s}.mlp.0")
        lin(f"{d}/ffn/linear_1", f"{s}.mlp.2")
        ln(f"{d}/ffn/layer_norm", f"{s}.mlp_ln")
    ln("encoder/layer_norm", "encoder.ln_post")
    v["decoder/embeddings/weight"] = sd["decoder.token_embedding.weight"]
    v["decoder/position_encodings/encodings"] = sd["decoder.positional_embedding"]
    for i in range(n_dec):
        d, s = f"decoder/layer_{i}", f"decoder.blocks.{i}"
        fused(f"{d}/self_attention/linear_0", [f"{s}.attn.query", f"{s}.attn.key", f"{s}.attn.value"])
        lin(f"{d}/self_attention/linear_1", f"{s}.attn.out")
        ln(f"{d}/self_attention/layer_norm", f"{s}.attn_ln")
        lin(f"{d}/attention/linear_0", f"{s}.cross_attn.query")
        fused(f"{d}/attention/linear_1", [f"{s}.cross_attn.key", f"{s}.cross_attn.value"])
        lin(f"{d}/attention/linear_2", f"{s}.cross_attn.out")
        ln(f"{d}/attention/layer_norm", f"{s}.cross_attn_ln")
        lin(f"{d}/ffn/linear_0", f"{s}.mlp.0")
        lin(f"{d}/ffn/linear_1", f"{s}.mlp.2")
        ln(f"{d}/ffn/layer_norm", f"{s}.mlp_ln")
    ln("decoder/layer_norm", "decoder.ln")
    with open(path, "wb") as fh:
        fh.write(struct.pack("<I", 6) + _ct2_string("WhisperSpec") + struct.pack("<I", 3))
        fh.write(struct.pack("<I", len(v)))
        for name, arr in v.items():
            arr = np.ascontiguousarray(arr, dtype=np.float16)
            fh.write(_ct2_string(name) + struct.pack("<B", arr.ndim) + struct.pack(f"<{arr.ndim}I", *arr.shape))
            fh.write(struct.pack("<B", 4) + struct.pack("<I", arr.nbytes) + arr.tobytes())
        fh.write(struct.pack("<I", 1) + _ct2_string("decoder/projection/weight") + _ct2_string("decoder/embeddings/weight"))


def test_converter_on_random_small_whisper(tmp_path):
    import torch
    import whisper
    from whisper.model import ModelDimensions

    from nodes.listen.convert_ct2 import CT2FormatError, convert

    dims = ModelDimensions(n_mels=80, n_audio_ctx=24, n_audio_state=128, n_audio_head=2, n_audio_layer=2,
                           n_vocab=51865, n_text_ctx=16, n_text_state=128, n_text_head=2, n_text_layer=2)
    torch.manual_seed(0)
    original = whisper.model.Whisper(dims).eval()
    with torch.no_grad():
        for p in original.parameters():
            p.normal_(0, 0.05)
    sd = {k: t.detach().numpy().astype(np.float32) for k, t in original.state_dict().items()}
    write_ct2_whisper(tmp_path / "model.bin", sd)
    out = convert(tmp_path / "model.bin", tmp_path / "openai.pt")
    checkpoint = torch.load(out, weights_only=True)
    assert checkpoint["dims"] == dims.__dict__
    converted = checkpoint["model_state_dict"]
    assert set(converted) == set(original.state_dict())
    for name, tensor in original.state_dict().items():
        assert converted[name].shape == tensor.shape, name
        assert torch.allclose(converted[name].float(), tensor.half().float()), name
    loaded = whisper.load_model(str(out), device="cpu").eval()
    mel = torch.randn(1, 80, 48)
    tokens = torch.tensor([[50258, 50259, 50359, 50363]])
    with torch.no_grad():
        expected = original.half().float()(mel, tokens)
        got = loaded(mel, tokens)
    assert torch.allclose(got, expected, atol=1e-3)
    broken = tmp_path / "broken.bin"
    broken.write_bytes((tmp_path / "model.bin").read_bytes()[:5000])
    with pytest.raises(CT2FormatError, match="truncated"):
        convert(broken, tmp_path / "broken.pt")


# ------------------------------------------------------------------------------------------------ VAD
@pytest.fixture(scope="module")
def silero():
    from nodes.listen.vad import SileroVAD

    return SileroVAD()


def test_vad_cuts_two_utterances_into_two_turns(speech, silero):
    from nodes.listen.vad import SpeechAudio, SpeechStarted, TurnEnded, VoiceActivityDetector

    audio = load_audio(speech["two"])
    vad = VoiceActivityDetector(model=silero)
    events = []
    for start in range(0, len(audio.samples), 320):  # 20 ms frames, like the mic
        events += vad.push(audio.samples[start:start + 320])
    events += vad.flush()
    starts = [e for e in events if isinstance(e, SpeechStarted)]
    turns = [e for e in events if isinstance(e, TurnEnded)]
    assert len(starts) == 2 and len(turns) == 2
    en1 = load_audio(speech["en1"]).duration
    assert turns[0].start == pytest.approx(1.2, abs=0.3) and turns[0].speech_end < 1.2 + en1 + 0.3
    assert turns[1].start > turns[0].end
    for turn in turns:
        partial = np.concatenate([e.samples for e in events if isinstance(e, SpeechAudio) and e.turn_id == turn.turn_id])
        assert np.array_equal(turn.samples[:len(partial)], partial)  # partials are a prefix of the final turn
        assert 0 <= len(turn.samples) - len(partial) <= 0.2 * 16000 + 512  # + at most the trailing pad


def test_vad_ignores_silence_noise_and_short_clicks(silero):
    from nodes.listen.vad import VADConfig, VoiceActivityDetector

    rng = np.random.default_rng(1)
    vad = VoiceActivityDetector(VADConfig(min_speech_ms=250), model=silero)
    noise = (0.003 * rng.standard_normal(16000 * 3)).astype(np.float32)
    click = np.zeros(16000, dtype=np.float32)
    click[8000:8100] = 0.9
    assert vad.push(np.zeros(16000 * 2, dtype=np.float32)) + vad.push(noise) + vad.push(click) + vad.flush() == []
    assert vad.push(np.zeros(0, dtype=np.float32)) == []
    with pytest.raises(ValueError):
        VADConfig(threshold=1.5)


# ------------------------------------------------------------------------------------------------ backends
@pytest.fixture(scope="module")
def whisper_base():
    from nodes.listen import weights

    return weights.locate("whisper-base")


@pytest.fixture(scope="module")
def faster(whisper_base):
    from nodes.listen.backends import FasterWhisperBackend

    return FasterWhisperBackend(whisper_base.path, cpu_threads=2)


@pytest.fixture(scope="module")
def openai_backend(whisper_base):
    from nodes.listen.backends import OpenAIWhisperBackend
    from nodes.listen.convert_ct2 import ensure_openai_checkpoint

    return OpenAIWhisperBackend(ensure_openai_checkpoint(whisper_base.path))


@pytest.mark.parametrize("backend", ["faster", "openai_backend"])
def test_backends_transcribe_english_and_russian(request, speech, backend):
    engine = request.getfixturevalue(backend)
    en = engine.transcribe(load_audio(speech["en1"]).samples, ("ru", "en"))
    assert en.language == "en" and wer(EN_1, en.text) <= 0.2, en
    ru = engine.transcribe(load_audio(speech["ru1"]).samples, ("ru", "en"))
    assert ru.language == "ru" and wer(RU_1, ru.text) <= 0.5, ru
    assert "привет" in normalise(ru.text)


def test_full_window_matches_short_window_and_fixed_language(faster, speech):
    samples = load_audio(speech["en2"]).samples
    short = faster.transcribe(samples, ("en",), fit_window=True)
    full = faster.transcribe(samples, ("en",), fit_window=False)
    assert short.language == "en" and short.language_prob == 1.0
    assert wer(EN_2, short.text) <= 0.2 and wer(EN_2, full.text) <= 0.2, (short.text, full.text)


def test_backend_silence_and_tiny_input(faster):
    assert faster.transcribe(np.zeros(100, dtype=np.float32), ("en",)).text == ""
    with pytest.raises(ValueError, match="NaN"):
        faster.transcribe(np.full(16000, np.nan, dtype=np.float32), ("en",))


# ------------------------------------------------------------------------------------------------ nodes in graphs
class _Collect(Node):
    OUTPUT_NODE = True
    INPUTS = (Input.socket("text_stream", T.TEXT_STREAM, required=False), Input.socket("text", T.TEXT, required=False))

    async def run(self, ctx, text_stream=None, text=None):
        chunks = []
        if text_stream is not None:
            async for chunk in text_stream:
                chunks.append({"text": chunk.text, "turn_id": chunk.turn_id, "final": chunk.final})
        return NodeResult((), {"chunks": chunks, "text": [text]})


class FakeSession:
    """The two things the listen nodes use of a live session."""

    def __init__(self, pcm: bytes = b"", frame_bytes: int = 641):
        self.events: list[tuple[str, dict]] = []
        self.state: dict = {}
        self._pcm, self._frame = pcm, frame_bytes

    def emit_event(self, type_: str, data: dict | None = None) -> None:
        self.events.append((type_, dict(data or {})))

    async def input_stream(self, name: str):
        assert name == "mic"
        for i in range(0, len(self._pcm), self._frame):
            yield self._pcm[i:i + self._frame]
            await asyncio.sleep(0)


@pytest.fixture()
def registry(tmp_path, monkeypatch):
    monkeypatch.setattr(folders, "data_dir", tmp_path)
    reg = NodeRegistry()
    reg.discover("nodes.listen")
    reg.register(_Collect)
    return reg


def _input(tmp_path: Path, src: Path) -> str:
    dst = folders.get("input") / src.name
    shutil.copy(src, dst)
    return src.name


async def test_graph_file_to_vad_to_whisper_gives_two_turns(registry, speech, tmp_path):
    name = _input(tmp_path, speech["two"])
    session = FakeSession()
    prompt = {
        "1": {"class_type": "MicInput", "inputs": {"source": "file", "file": name}},
        "2": {"class_type": "VAD", "inputs": {"audio_stream": ["1", 1]}},
        "3": {"class_type": "Whisper", "inputs": {"audio_stream": ["2", 0], "language": "auto",
                                                  "detect_among": "ru,en", "incremental": True}},
        "4": {"class_type": "_Collect", "inputs": {"text_stream": ["3", 1]}},
    }
    result = await Executor(registry).execute(prompt, session=session)
    assert result.ok, result.error
    chunks = result.outputs["4"]["chunks"]
    assert [c["turn_id"] for c in chunks] == [0, 1] and all(c["final"] for c in chunks)
    assert wer(EN_1, chunks[0]["text"]) <= 0.2 and wer(EN_2, chunks[1]["text"]) <= 0.3, chunks
    kinds = [e[0] for e in session.events]
    assert kinds.count("speech_start") == 2 and kinds.count("speech_end") == 2 and kinds.count("transcript") == 2
    assert kinds.index("speech_start") < kinds.index("speech_end")


async def test_graph_one_shot_8k_stereo_silence_and_corrupt(registry, speech, tmp_path):
    def prompt(name):
        return {"1": {"class_type": "MicInput", "inputs": {"source": "file", "file": name}},
                "2": {"class_type": "Whisper", "inputs": {"audio": ["1", 0], "language": "en"}},
                "3": {"class_type": "_Collect", "inputs": {"text": ["2", 0], "text_stream": ["2", 1]}}}

    executor = Executor(registry)
    result = await executor.execute(prompt(_input(tmp_path, speech["en1_8k_stereo"])))
    assert result.ok, result.error
    assert wer(EN_1, result.outputs["3"]["text"][0]) <= 0.2
    assert result.outputs["3"]["chunks"][0]["text"] == result.outputs["3"]["text"][0]

    result = await executor.execute(prompt(_input(tmp_path, speech["silence"])))
    assert result.ok and result.outputs["3"]["text"] == [""]

    soundfile.write(str(tmp_path / "zero.wav"), np.zeros(0, dtype=np.float32), 16000)
    result = await executor.execute(prompt(_input(tmp_path, tmp_path / "zero.wav")))
    assert result.ok and result.outputs["3"]["text"] == [""]

    (tmp_path / "corrupt.wav").write_bytes(b"RIFF....WAVEfmt " + bytes(range(256)) * 8)
    result = await executor.execute(prompt(_input(tmp_path, tmp_path / "corrupt.wav")))
    assert result.status == "error"
    assert "corrupt.wav" in str(result.error) and "cannot read audio" in str(result.error)


def _ctx(session=None) -> NodeContext:
    return NodeContext("n1", "MicInput", "p1", asyncio.get_running_loop(), lambda e: None, threading.Event(),
                       session=session)


async def test_mic_input_session_source_reassembles_pcm_frames():
    from nodes.listen.nodes import MicInput

    samples = (0.3 * np.sin(np.arange(16000) / 7.0)).astype(np.float32)
    session = FakeSession(float_to_pcm16(samples), frame_bytes=641)  # odd frame sizes split samples
    audio, stream = await MicInput("n1").run(_ctx(session), source="session")
    assert audio is None
    got = np.concatenate([c.samples async for c in stream])
    assert np.allclose(got, samples, atol=1 / 32767)
    with pytest.raises(Exception, match="live session"):
        await MicInput("n1").run(_ctx(None), source="session")


async def test_mic_input_hour_long_file_only_streams(tmp_path, monkeypatch):
    from nodes.listen.nodes import MicInput
    from tests.test_audio_io import sparse_wav

    monkeypatch.setattr(folders, "data_dir", tmp_path)
    sparse_wav(folders.get("input") / "hour.wav", 3600.0)
    audio, stream = await MicInput("n1").run(_ctx(), source="file", file="hour.wav")
    assert audio is None  # an hour is only streamed
    n = 0
    async for chunk in stream:
        assert chunk.sample_rate == 16000 and len(chunk.samples) == 320
        n += 1
        if n == 1000:  # 20 s in: the stream works without the whole file in memory
            break
    await stream.aclose()


def test_whisper_language_settings_are_checked():
    from nodes.listen.nodes import Whisper

    assert Whisper.check_inputs({"language": "auto", "detect_among": "ru, en"}) == []
    assert Whisper.check_inputs({"language": "en", "detect_among": ""}) == []
    assert [p[0] for p in Whisper.check_inputs({"language": "auto", "detect_among": " , "})] == ["detect_among"]
    assert "russian" in Whisper.check_inputs({"language": "auto", "detect_among": "ru,russian"})[0][1]


async def test_incremental_turn_reuses_the_pass_that_covered_everything():
    from nodes.listen.backends import Transcript
    from nodes.listen.incremental import IncrementalTurn

    calls: list[int] = []

    async def run_pass(audio):
        calls.append(len(audio))
        await asyncio.sleep(0.05)
        return Transcript(f"{len(audio)} samples", "en", 1.0, 0.0, 0.0, len(audio) / 16000, 0.05)

    turn = IncrementalTurn(run_pass)
    turn.offer(np.zeros(16000, np.float32))  # starts a pass at once
    turn.offer(np.zeros(8000, np.float32))  # a pass is running: one more follows it
    await asyncio.sleep(0.2)
    assert calls == [16000, 24000]
    done = await turn.finish(np.zeros(24000 + 3200, np.float32))  # + trailing pad only
    assert done.reused and done.transcript.text == "24000 samples" and calls == [16000, 24000]

    turn = IncrementalTurn(run_pass)
    turn.offer(np.zeros(16000, np.float32))
    done = await turn.finish(np.zeros(16000 * 3, np.float32))  # the turn holds audio no pass saw: final pass
    assert not done.reused and done.transcript.text == "48000 samples" and done.passes == 2

    turn = IncrementalTurn(run_pass)  # nothing offered (incremental off): one pass on the turn
    done = await turn.finish(np.zeros(8000, np.float32))
    assert not done.reused and done.passes == 1


async def test_mic_input_file_realtime_pacing(tmp_path, monkeypatch):
    from nodes.listen.nodes import MicInput

    monkeypatch.setattr(folders, "data_dir", tmp_path)
    write_wav(folders.get("input") / "one.wav", Audio(np.zeros(16000, np.float32), 16000))
    for realtime, slow in ((False, False), (True, True)):
        audio, stream = await MicInput("n1").run(_ctx(), source="file", file="one.wav", realtime=realtime)
        assert audio.duration == pytest.approx(1.0)
        began = asyncio.get_running_loop().time()
        chunks = [c async for c in stream]
        took = asyncio.get_running_loop().time() - began
        assert sum(len(c.samples) for c in chunks) == 16000 and len(chunks) == 50
        assert (took >= 0.9) == slow, took


def test_short_window_loop_guard():
    from nodes.listen.backends import check_fitted, cut_trailing_loop

    loop = "Open the window, it is too hot in here. Open the window, it is too hot in here. Open the window, it is"
    assert cut_trailing_loop(loop) == "Open the window, it is too hot in here."
    assert check_fitted(loop, 40, 60, 2.5) == "Open the window, it is too hot in here."
    messy = ("Open the window, it is too hot in here. Open the window, it is too hot in here. It is too hot in "
             "here. Open the window.")
    assert check_fitted(messy, 40, 60, 2.5) is None  # redo on the full window
    assert check_fitted("Hello, how are you doing today?", 10, 60, 2.0) == "Hello, how are you doing today?"
    assert check_fitted("one two three four five six seven eight nine ten eleven twelve thirteen", 14, 60, 1.5) is None
    assert check_fitted("Привет, как у тебя дела сегодня?", 60, 60, 2.0) is None  # hit the token budget
    # a short turn said over again by the decoder ("Hi there. Hi there.") is kept once
    assert check_fitted("Hi there. Hi there.", 8, 40, 1.2) == "Hi there."
    assert check_fitted("Привет! Привет!", 6, 40, 1.0) == "Привет!"
    assert check_fitted("Hi there. How are you?", 8, 40, 1.5) == "Hi there. How are you?"
    from nodes.listen.backends import cut_repeated_sentence  # copies without punctuation (seen with beam search)

    assert cut_repeated_sentence("Good evening Good evening") == "Good evening"
    assert cut_repeated_sentence("Добрый вечер, добрый вечер") == "Добрый вечер"
    assert cut_repeated_sentence("bye bye") is None and cut_repeated_sentence("Good evening, my friend") is None
