"""Voice adaptation and voice similarity: the default voice moves towards a held-out reference speaker.

Development tuned the adaptation against Festival's ``slt`` voice; this test's target is Festival's ``kal``
diphone voice (a real recorded speaker), which was not used while developing it.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from engine.graph.context import NodeContext
from engine.graph.node import NodeInputError
from nodes.io.media import Audio
from nodes.speak.nodes import TTS, AdaptVoice, LoadVoice, VoiceSimilarity

KAL = Path("/usr/share/festival/voices/english/kal_diphone")


def ctx(class_type: str) -> NodeContext:
    return NodeContext("3", class_type, "test", asyncio.get_running_loop(), lambda e: None, threading.Event())


def kal(text: str, tmp: Path) -> Audio:
    (tmp / "t.txt").write_text(text)
    subprocess.run(["text2wave", "-eval", "(voice_kal_diphone)", str(tmp / "t.txt"), "-o", str(tmp / "o.wav")],
                   check=True, capture_output=True, timeout=60)
    samples, rate = sf.read(tmp / "o.wav", dtype="float32")
    return Audio(samples, rate)


@pytest.mark.skipif(not KAL.exists() or shutil.which("text2wave") is None,
                    reason="festvox-kallpc16k is not installed (requirements/apt-tts.txt)")
async def test_adaptation_raises_similarity_to_an_unseen_speaker(tmp_path: Path) -> None:
    reference = kal("Good morning. I would like to tell you a short story about my grandfather, who was a sailor "
                    "for many years and travelled around the world.", tmp_path)
    held_out = kal("The weather was cold and windy, so we stayed at home and played cards by the fire.", tmp_path)
    (voice,) = (await LoadVoice("1").execute(ctx("LoadVoice"), {"audio": reference, "name": "kal"})).outputs
    text = "Yesterday I went to the market and bought some apples, bread and fresh milk for breakfast."
    plain = (await TTS("2").execute(ctx("TTS"), {"text": text, "backend": "piper", "persona": "none"})).outputs[0]
    adapted, stream = (await TTS("2").execute(ctx("TTS"), {"text": text, "backend": "piper", "persona": "none", "voice": voice,
                                                           "adapt": 1.0})).outputs
    chunks = [c async for c in stream]
    assert chunks[0].timings and adapted.sample_rate == plain.sample_rate
    assert abs(adapted.duration - plain.duration) < 0.05  # same timing: the timings still hold

    similarity = VoiceSimilarity("4")
    before = (await similarity.execute(ctx("VoiceSimilarity"), {"audio": plain, "reference": held_out})).outputs[0]
    after = (await similarity.execute(ctx("VoiceSimilarity"), {"audio": adapted, "reference": held_out})).outputs[0]
    assert after - before >= 0.10, (before, after)

    (half,) = (await AdaptVoice("5").execute(ctx("AdaptVoice"), {"audio": plain, "voice": voice,
                                                                "strength": 0.5})).outputs
    middle = (await similarity.execute(ctx("VoiceSimilarity"), {"audio": half, "reference": held_out})).outputs[0]
    assert before < middle < after + 0.05


async def test_similarity_separates_speakers(tmp_path: Path) -> None:
    a = (await TTS("2").execute(ctx("TTS"), {"text": "The quick brown fox jumps over the lazy dog today.",
                                            "backend": "piper", "persona": "none"})).outputs[0]
    b = (await TTS("2").execute(ctx("TTS"), {"text": "My friends and I went to see a film at the cinema.",
                                            "backend": "piper", "persona": "none"})).outputs[0]
    c = (await TTS("2").execute(ctx("TTS"), {"text": "My friends and I went to see a film at the cinema.",
                                            "backend": "espeak", "persona": "none"})).outputs[0]
    node = VoiceSimilarity("4")
    same = (await node.execute(ctx("VoiceSimilarity"), {"audio": a, "reference": b})).outputs[0]
    different = (await node.execute(ctx("VoiceSimilarity"), {"audio": a, "reference": c})).outputs[0]
    assert same > 0.8 and different < same - 0.2
    with pytest.raises(NodeInputError, match="at least 1 s"):
        await node.execute(ctx("VoiceSimilarity"), {"audio": Audio(a.samples[:8000], a.sample_rate),
                                                    "reference": b})


async def test_reference_of_silence_or_two_seconds_is_rejected() -> None:
    silence = Audio(np.zeros(16000 * 5, np.float32), 16000)
    with pytest.raises(NodeInputError, match="silent"):
        await LoadVoice("1").execute(ctx("LoadVoice"), {"audio": silence})
    speech = (await TTS("2").execute(ctx("TTS"), {"text": "Hello there, how are you doing today my friend?",
                                                 "backend": "piper", "persona": "none"})).outputs[0]
    two = Audio(speech.samples[: speech.sample_rate * 2], speech.sample_rate)
    with pytest.raises(NodeInputError, match="at least 3 s") as err:
        await LoadVoice("1").execute(ctx("LoadVoice"), {"audio": two})
    assert err.value.input_name == "audio"
