"""Template thumbnails for the frontend's template browser: a small picture of the workflow's graph
(node boxes where the editor places them, the title underneath), drawn with Pillow."""

from __future__ import annotations

import io
from typing import Any

from PIL import Image, ImageDraw

from engine.graph import types as T

SIZE = (320, 240)
BACKGROUND = (24, 24, 27)
NODE = (58, 58, 64)


def _boxes(workflow: dict[str, Any]) -> list[tuple[float, float, float, float, str]]:
    boxes = []
    for node in workflow.get("nodes") or []:
        try:
            x, y = float(node["pos"][0]), float(node["pos"][1])
            w, h = float(node["size"][0]), float(node["size"][1])
        except (KeyError, IndexError, TypeError, ValueError):
            continue
        outputs = node.get("outputs") or []
        kind = str(outputs[0].get("type", "")) if outputs and isinstance(outputs[0], dict) else ""
        boxes.append((x, y, w, h, kind))
    return boxes


def render(workflow: dict[str, Any], title: str) -> bytes:
    img = Image.new("RGB", SIZE, BACKGROUND)
    draw = ImageDraw.Draw(img)
    boxes = _boxes(workflow)
    if boxes:
        left = min(b[0] for b in boxes)
        top = min(b[1] for b in boxes)
        right = max(b[0] + b[2] for b in boxes)
        bottom = max(b[1] + b[3] for b in boxes)
        area = (12, 12, SIZE[0] - 12, SIZE[1] - 40)
        scale = min((area[2] - area[0]) / max(right - left, 1), (area[3] - area[1]) / max(bottom - top, 1))
        pad_x = ((area[2] - area[0]) - (right - left) * scale) / 2  # centred in the area
        pad_y = ((area[3] - area[1]) - (bottom - top) * scale) / 2
        for x, y, w, h, kind in boxes:
            x0 = area[0] + pad_x + (x - left) * scale
            y0 = area[1] + pad_y + (y - top) * scale
            colour = T.TYPE_COLOURS.get(kind, "#9e9e9e")
            draw.rounded_rectangle((x0, y0, x0 + max(w * scale, 6), y0 + max(h * scale, 4)), radius=3, fill=NODE,
                                   outline=colour, width=2)
    draw.text((12, SIZE[1] - 28), title[:48], fill=(230, 230, 230))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=85)
    return buf.getvalue()
