"""ComfyUI's V3 UI outputs (``comfy_api.latest.ui``): what a node shows in the editor, as the ``ui`` dict of
its result (``{"images": [...]}``, ``{"audio": [...]}``, ``{"text": [...]}``). Previews are written to the
temp folder, saved files to the output folder, as ``{filename, subfolder, type}`` entries."""

from __future__ import annotations

import os
import uuid
import wave
from typing import Any

from engine.comfy.shims import folder_paths
from engine.comfy.shims.comfy_api.latest._io import FolderType, _UIOutput


class SavedResult(dict):  # type: ignore[type-arg]
    def __init__(self, filename: str, subfolder: str, type: FolderType | str):
        super().__init__(filename=filename, subfolder=subfolder, type=getattr(type, "value", type))


class SavedImages(_UIOutput):
    def __init__(self, results: list[SavedResult], is_animated: bool = False):
        self.results = results
        self.is_animated = is_animated

    def as_dict(self) -> dict[str, Any]:
        return {"images": list(self.results), "animated": (self.is_animated,)}


class SavedAudios(_UIOutput):
    def __init__(self, results: list[SavedResult]):
        self.results = results

    def as_dict(self) -> dict[str, Any]:
        return {"audio": list(self.results)}


def _folder(folder_type: FolderType | str) -> str:
    kind = getattr(folder_type, "value", folder_type)
    return folder_paths.get_temp_directory() if kind == "temp" else folder_paths.get_output_directory()


class ImageSaveHelper:
    @staticmethod
    def save_images(images: Any, filename_prefix: str, folder_type: FolderType | str = FolderType.output,
                    cls: Any = None, compress_level: int = 4) -> list[SavedResult]:
        """Each image of an ``[B, H, W, C]`` batch (0..1) as a PNG; returns where they are."""
        import numpy as np
        from PIL import Image

        root = _folder(folder_type)
        full, name, counter, subfolder, _ = folder_paths.get_save_image_path(
            filename_prefix, root, int(images.shape[2]), int(images.shape[1]))
        results = []
        for index, image in enumerate(images):
            array = (image.detach().cpu().numpy().clip(0, 1) * 255.0).round().astype(np.uint8)
            file = f"{name.replace('%batch_num%', str(index))}_{counter:05}_.png"
            Image.fromarray(array.squeeze(-1) if array.shape[-1] == 1 else array).save(
                os.path.join(full, file), compress_level=compress_level)
            results.append(SavedResult(file, subfolder, folder_type))
            counter += 1
        return results

    @staticmethod
    def get_save_images_ui(images: Any, filename_prefix: str, cls: Any = None, compress_level: int = 4) -> SavedImages:
        return SavedImages(ImageSaveHelper.save_images(images, filename_prefix, FolderType.output, cls, compress_level))


class AudioSaveHelper:
    @staticmethod
    def save_audio(audio: dict[str, Any], filename_prefix: str, folder_type: FolderType | str = FolderType.output,
                   cls: Any = None, format: str = "wav", quality: str = "") -> list[SavedResult]:
        """Each clip of ``{"waveform": [B, C, S], "sample_rate"}`` as 16-bit WAV; returns where they are."""
        import numpy as np

        root = _folder(folder_type)
        full, name, counter, subfolder, _ = folder_paths.get_save_image_path(filename_prefix, root)
        results = []
        for index, clip in enumerate(audio["waveform"]):
            pcm = (clip.detach().cpu().float().numpy().clip(-1, 1) * 32767).round().astype("<i2")
            file = f"{name.replace('%batch_num%', str(index))}_{counter:05}_.wav"
            with wave.open(os.path.join(full, file), "wb") as out:
                out.setnchannels(pcm.shape[0])
                out.setsampwidth(2)
                out.setframerate(int(audio["sample_rate"]))
                out.writeframes(np.ascontiguousarray(pcm.T).tobytes())
            results.append(SavedResult(file, subfolder, folder_type))
            counter += 1
        return results


class PreviewImage(_UIOutput):
    def __init__(self, image: Any, animated: bool = False, cls: Any = None, **kwargs: Any):
        prefix = "ComfyUI_temp_" + uuid.uuid4().hex[:5]
        self.values = ImageSaveHelper.save_images(image, prefix, FolderType.temp, cls, compress_level=1)
        self.animated = animated

    def as_dict(self) -> dict[str, Any]:
        return {"images": list(self.values), "animated": (self.animated,)}


class PreviewMask(PreviewImage):
    def __init__(self, mask: Any, animated: bool = False, cls: Any = None, **kwargs: Any):
        image = mask.reshape((-1, 1, mask.shape[-2], mask.shape[-1])).movedim(1, -1).expand(-1, -1, -1, 3)
        super().__init__(image, animated, cls, **kwargs)


class PreviewAudio(_UIOutput):
    def __init__(self, audio: dict[str, Any], cls: Any = None, **kwargs: Any):
        prefix = "ComfyUI_temp_" + uuid.uuid4().hex[:5]
        self.values = AudioSaveHelper.save_audio(audio, prefix, FolderType.temp, cls)

    def as_dict(self) -> dict[str, Any]:
        return {"audio": list(self.values)}


class PreviewText(_UIOutput):
    def __init__(self, value: str, **kwargs: Any):
        self.value = value

    def as_dict(self) -> dict[str, Any]:
        return {"text": [self.value]}
