"""ComfyUI's core nodes (nodes/io): SaveImage / PreviewImage / RebatchImages take our arrays and ComfyUI's tensors,
list values and blocked items; SaveAudio / PreviewAudio take our Audio, ComfyUI's waveform dicts and AUDIO_STREAMs;
PreviewAny shows any value as text (a TEXT_STREAM as its words); the primitives feed values."""

from __future__ import annotations

import wave

import numpy as np
import pytest
from PIL import Image

from engine.files.folders import folders
from engine.graph import types as T
from engine.graph.executor import Executor
from engine.graph.flow import ExecutionBlocker, ValueList
from engine.graph.node import Node, Output
from engine.graph.registry import NodeRegistry
from nodes.io.media import Audio, AudioChunk, TextChunk
from tests.test_render_helpers import sandbox_folders

VALUES: dict[str, object] = {}


class Value(Node):
    """Hands a test value into the graph."""
    OUTPUTS = (Output("value", T.ANY),)
    DETERMINISTIC = False

    def run(self, ctx):
        return (VALUES[ctx.node_id],)


class Words(Node):
    OUTPUTS = (Output("text", T.TEXT_STREAM),)

    async def run(self, ctx):
        for word in ("hello", "there"):
            yield TextChunk(word)


class Speech(Node):
    OUTPUTS = (Output("audio", T.AUDIO_STREAM),)

    async def run(self, ctx):
        for _ in range(2):
            yield AudioChunk(np.full(800, 0.25, np.float32), 16000)


@pytest.fixture
def executor(monkeypatch, tmp_path) -> Executor:
    sandbox_folders(monkeypatch, tmp_path)
    reg = NodeRegistry()
    reg.discover("nodes")
    for cls in (Value, Words, Speech):
        reg.register(cls)
    VALUES.clear()
    return Executor(reg)


def _image(entry: dict) -> np.ndarray:
    return np.asarray(Image.open(folders.resolve(entry["type"], entry["filename"], entry["subfolder"])))


async def test_save_and_preview_images_from_arrays_tensors_and_lists(executor):
    import torch

    VALUES["1"] = np.full((4, 6, 3), 200, np.uint8)  # ours: one (H, W, 3) uint8 image
    VALUES["2"] = torch.full((2, 4, 6, 3), 0.25)  # ComfyUI's: a batch of two, 0.25 -> 63 (truncated as ComfyUI does)
    VALUES["3"] = ValueList([torch.ones(1, 4, 6, 3), ExecutionBlocker(None), torch.zeros(1, 4, 6, 3)])
    api = {"1": {"class_type": "Value", "inputs": {}}, "2": {"class_type": "Value", "inputs": {}},
           "3": {"class_type": "Value", "inputs": {}},
           "4": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "shots/a"}},
           "5": {"class_type": "SaveImage", "inputs": {"images": ["2", 0]}},
           "6": {"class_type": "PreviewImage", "inputs": {"images": ["3", 0]}}}
    result = await executor.execute(api)
    assert result.ok, result.error
    [a] = result.outputs["4"]["images"]
    assert a["subfolder"] == "shots" and a["type"] == "output" and a["filename"] == "a_00001_.png"
    assert (_image(a) == 200).all()
    assert [_image(e).max() for e in result.outputs["5"]["images"]] == [63, 63]
    previews = result.outputs["6"]["images"]
    assert [e["type"] for e in previews] == ["temp", "temp"] and [_image(e).max() for e in previews] == [255, 0]


async def test_rebatch_images_regroups_a_list_of_batches(executor):
    import torch

    VALUES["1"] = ValueList([torch.zeros(2, 2, 2, 3), torch.ones(3, 2, 2, 3)])
    api = {"1": {"class_type": "Value", "inputs": {}},
           "2": {"class_type": "RebatchImages", "inputs": {"images": ["1", 0], "batch_size": 2}}}
    executor_result = await executor.execute({**api, "3": {"class_type": "PreviewAny", "inputs": {"source": ["2", 0]}}})
    batches = executor_result.values["2"][0]
    assert isinstance(batches, ValueList) and [b.shape[0] for b in batches] == [2, 2, 1]


async def test_audio_nodes_take_our_audio_comfy_waveforms_and_streams(executor):
    import torch

    VALUES["1"] = Audio(np.linspace(-0.5, 0.5, 1600, dtype=np.float32), 16000)
    VALUES["2"] = {"waveform": torch.zeros(1, 2, 480), "sample_rate": 48000}
    api = {"1": {"class_type": "Value", "inputs": {}}, "2": {"class_type": "Value", "inputs": {}},
           "3": {"class_type": "Speech", "inputs": {}},
           "4": {"class_type": "SaveAudio", "inputs": {"audio": ["1", 0], "filename_prefix": "audio/me"}},
           "5": {"class_type": "PreviewAudio", "inputs": {"audio": ["2", 0]}},
           "6": {"class_type": "PreviewAudio", "inputs": {"audio": ["3", 0]}}}
    result = await executor.execute(api)
    assert result.ok, result.error

    def info(entry: dict) -> tuple[int, int, int]:
        with wave.open(str(folders.resolve(entry["type"], entry["filename"], entry["subfolder"]))) as f:
            return f.getnchannels(), f.getframerate(), f.getnframes()

    [saved] = result.outputs["4"]["audio"]
    assert saved["type"] == "output" and saved["subfolder"] == "audio" and info(saved) == (1, 16000, 1600)
    assert info(result.outputs["5"]["audio"][0]) == (2, 48000, 480)
    assert info(result.outputs["6"]["audio"][0]) == (1, 16000, 1600)


async def test_preview_any_shows_text_numbers_json_and_streams(executor):
    VALUES.update({"1": "a transcript", "2": 3.5, "3": {"reply": "hi", "n": [1, 2]}})
    api = {str(i): {"class_type": "Value", "inputs": {}} for i in (1, 2, 3)}
    api.update({"4": {"class_type": "Words", "inputs": {}},
                "5": {"class_type": "PrimitiveInt", "inputs": {"value": 7}}})
    api.update({f"p{i}": {"class_type": "PreviewAny", "inputs": {"source": [str(i), 0]}} for i in range(1, 6)})
    result = await executor.execute(api)
    assert result.ok, result.error
    texts = {k: v["text"][0] for k, v in result.outputs.items()}
    assert texts == {"p1": "a transcript", "p2": "3.5", "p3": '{"reply": "hi", "n": [1, 2]}', "p4": "hello there",
                     "p5": "7"}


async def test_text_and_literal_values_connect(executor):
    api = {"1": {"class_type": "PrimitiveStringMultiline", "inputs": {"value": "line one\nline two"}},
           "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}},
           "3": {"class_type": "PreviewAny", "inputs": {"source": "typed in"}}}
    result = await executor.execute(api)
    assert result.outputs == {"2": {"text": ["line one\nline two"]}, "3": {"text": ["typed in"]}}


class _ShapeOf:
    """A ComfyUI V1 node that, like packs do, reads IMAGE as a [B, H, W, C] tensor and AUDIO as a waveform dict."""

    @classmethod
    def INPUT_TYPES(cls):  # noqa: N802
        return {"required": {"image": ("IMAGE",), "audio": ("AUDIO",)}}

    RETURN_TYPES = ("STRING",)
    FUNCTION = "describe"

    def describe(self, image, audio):
        return (f"{tuple(image.shape)} {image.dtype} {image.max().item():.2f} | "
                f"{tuple(audio['waveform'].shape)} {audio['sample_rate']}",)


async def test_packs_receive_our_image_and_audio_in_comfy_form(executor):
    from engine.comfy.adapter import adapt_v1_node

    executor.registry.register(adapt_v1_node("ShapeOf", _ShapeOf), "comfy-test")
    VALUES["1"] = np.full((4, 6, 3), 255, np.uint8)
    VALUES["2"] = Audio(np.zeros(320, np.float32), 16000)
    api = {"1": {"class_type": "Value", "inputs": {}}, "2": {"class_type": "Value", "inputs": {}},
           "3": {"class_type": "ShapeOf", "inputs": {"image": ["1", 0], "audio": ["2", 0]}},
           "4": {"class_type": "PreviewAny", "inputs": {"source": ["3", 0]}}}
    result = await executor.execute(api)
    assert result.outputs["4"] == {"text": ["(1, 4, 6, 3) torch.float32 1.00 | (1, 1, 320) 16000"]}
