"""Looking at data: a contact sheet (PNG) and captioned GIFs of clips."""
from __future__ import annotations

import os
import textwrap

import numpy as np
from PIL import Image, ImageDraw, ImageFont

CELL = 160  # contact-sheet cell size in pixels
TEXT_ROWS = 5


def _font() -> ImageFont.ImageFont:
    return ImageFont.load_default()


def _caption_panel(text: str, width: int, rows: int = TEXT_ROWS) -> Image.Image:
    """A white panel with `text` wrapped to `width` pixels (about 6 px per character)."""
    chars = max(8, width // 6)
    lines = textwrap.wrap(text, chars)[:rows]
    panel = Image.new("RGB", (width, 12 * rows + 4), "white")
    draw = ImageDraw.Draw(panel)
    for i, line in enumerate(lines):
        draw.text((2, 2 + 12 * i), line, fill="black", font=_font())
    return panel


def _fit(frame: np.ndarray, box: int) -> Image.Image:
    """One frame scaled (nearest, to keep the pixels honest) to fit a `box x box` square, centered."""
    image = Image.fromarray(frame)
    scale = box / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    canvas = Image.new("RGB", (box, box), (40, 40, 40))
    canvas.paste(image.resize(size, Image.Resampling.NEAREST), ((box - size[0]) // 2, (box - size[1]) // 2))
    return canvas


def contact_sheet(clips: list[dict], path: str, columns: int = 4) -> str:
    """Writes a PNG grid: each cell the middle frame of a clip, its shape and its short caption."""
    rows = -(-len(clips) // columns)
    panel_h = _caption_panel("", CELL, 3).height
    sheet = Image.new("RGB", (columns * CELL, rows * (CELL + panel_h)), "white")
    for i, clip in enumerate(clips):
        video = clip["video"]  # (T, H, W, 3)
        x, y = (i % columns) * CELL, (i // columns) * (CELL + panel_h)
        sheet.paste(_fit(video[len(video) // 2], CELL), (x, y))
        label = f"{video.shape[0]}x{video.shape[1]}x{video.shape[2]}: {clip['caption_short']}"
        sheet.paste(_caption_panel(label, CELL, 3), (x, y + CELL))
    sheet.save(path)
    return path


def captioned_gif(clip: dict, path: str, fps: float = 8.0, box: int = 192) -> str:
    """Writes an animated GIF of the clip with its detailed caption under the frames."""
    panel = _caption_panel(clip["caption"], box, rows=8)
    frames = []
    for frame in clip["video"]:
        canvas = Image.new("RGB", (box, box + panel.height), "white")
        canvas.paste(_fit(frame, box), (0, 0))
        canvas.paste(panel, (0, box))
        frames.append(canvas)
    frames[0].save(
        path, save_all=True, append_images=frames[1:], duration=int(1000 / fps), loop=0, optimize=False
    )
    return path


def write_previews(clips: list[dict], out_dir: str, gifs: int = 4) -> dict:
    """Contact sheet of all `clips` and GIFs of the first `gifs` videos among them; returns the paths."""
    os.makedirs(out_dir, exist_ok=True)
    sheet = contact_sheet(clips, os.path.join(out_dir, "contact_sheet.png"))
    videos = [c for c in clips if c["video"].shape[0] > 1][:gifs]
    paths = [captioned_gif(c, os.path.join(out_dir, f"clip_{i:02d}.gif")) for i, c in enumerate(videos)]
    return {"contact_sheet": sheet, "gifs": paths}
