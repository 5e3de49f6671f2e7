"""Real photographs turned into clips with camera motion: the VAE's check on natural images.

scikit-image and scikit-learn ship sample photographs inside their packages (nothing is
downloaded). A clip is a virtual camera moving over one photo: a window that pans along a
straight line and zooms smoothly, resampled with a bicubic filter at sub-pixel positions, so
consecutive frames differ the way a real pan/zoom shot does (parallax aside).

Photos are split by name into `train` and `validation` so a VAE can train on some and be measured
on others.
"""
from __future__ import annotations

import functools

import numpy as np
from PIL import Image

# name -> loader; held-out photos are listed in VALIDATION.
_SKIMAGE = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "retina")
_SKLEARN = ("china.jpg", "flower.jpg")
VALIDATION = ("chelsea", "flower.jpg", "rocket")


@functools.cache
def _photo(name: str) -> np.ndarray:
    if name in _SKLEARN:
        from sklearn.datasets import load_sample_image  # noqa: PLC0415

        return np.asarray(load_sample_image(name), np.uint8)
    if name in _SKIMAGE:
        import skimage.data  # noqa: PLC0415

        return np.asarray(getattr(skimage.data, name)(), np.uint8)[..., :3]
    raise ValueError(f"unknown photo {name!r}; known: {sorted(_SKIMAGE + _SKLEARN)}")


def photo_names(split: str) -> tuple[str, ...]:
    """The photos of `split` ("train", "validation" or "all")."""
    every = _SKIMAGE + _SKLEARN
    if split == "all":
        return every
    if split == "validation":
        return VALIDATION
    if split == "train":
        return tuple(n for n in every if n not in VALIDATION)
    raise ValueError(f"split must be train, validation or all, got {split!r}")


def camera_clip(photo: np.ndarray, frames: int, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A `(frames, height, width, 3)` uint8 clip of a camera panning and zooming over `photo`.

    The window starts at a random place and scale (covering 35-80% of the photo's short side) and
    moves up to a quarter of its size per axis over the clip while its scale changes by up to 15%.
    """
    ph, pw = photo.shape[:2]
    aspect = width / height
    scale0 = rng.uniform(0.35, 0.8) * min(ph, pw * 1.0 / aspect) / height  # photo pixels per output pixel
    scale1 = scale0 * rng.uniform(0.87, 1.15)
    image = Image.fromarray(photo)
    out = np.empty((frames, height, width, 3), np.uint8)
    window = lambda s: (height * s, width * s)  # noqa: E731
    largest = np.maximum(window(scale0), window(scale1))
    start = np.array([rng.uniform(0, ph - largest[0]), rng.uniform(0, pw - largest[1])])
    move = np.array([rng.uniform(-0.25, 0.25) * largest[0], rng.uniform(-0.25, 0.25) * largest[1]])
    end = np.clip(start + move, 0, [ph - largest[0], pw - largest[1]])
    for t in range(frames):
        a = t / max(frames - 1, 1)
        scale = scale0 + a * (scale1 - scale0)
        top, left = start + a * (end - start)
        box = (left, top, left + width * scale, top + height * scale)
        out[t] = np.asarray(image.resize((width, height), Image.Resampling.BICUBIC, box=box))
    return out


def photo_clips(split: str, count: int, frames: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """`count` camera clips `(count, frames, height, width, 3)` uint8 over the photos of `split`,
    cycling through them; deterministic in `seed`."""
    names = photo_names(split)
    rng = np.random.default_rng(seed)
    return np.stack([camera_clip(_photo(names[i % len(names)]), frames, height, width, rng) for i in range(count)])
