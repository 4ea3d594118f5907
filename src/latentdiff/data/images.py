"""Image normalisation shared by every source: what a prepared dataset's images are made of."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageOps

# Lanczos is the sharpest of Pillow's filters for downscaling, which is what nearly every source needs.
RESAMPLE = Image.Resampling.LANCZOS
# Modes whose samples go past 8 bits. Pillow's own `convert` clips them at 255 instead of scaling, so a
# 16-bit grayscale PNG (0..65535) would come out almost all white.
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")
HIGH_DEPTH_MODES = (*SIXTEEN_BIT_MODES, "I", "F")
# Premultiplied-alpha modes -> their straight-alpha twins (Pillow cannot convert "La" to RGB directly).
PREMULTIPLIED_MODES = {"La": "LA", "RGBa": "RGBA"}
# Full-scale values of "I" and "F" samples, smallest first. These modes do not say which bit depth the
# file had, so the smallest range that holds the brightest sample is taken: floats in 0..1 (as TIFF and
# EXR viewers read them), 8-bit data Pillow widened (0..255), 16-bit data (0..65535), else 32-bit.
FULL_SCALES = {"F": (1.0, 255.0, 65535.0, 2.0**32 - 1), "I": (255.0, 65535.0, 2.0**32 - 1)}


def has_transparency(img: Image.Image) -> bool:
    return img.mode in ("RGBA", "LA", "PA", *PREMULTIPLIED_MODES) or "transparency" in img.info


def full_scale(mode: str, brightest: float) -> float:
    """The sample value a viewer shows as white for a high-depth `mode` (see `FULL_SCALES`)."""
    if mode in SIXTEEN_BIT_MODES:
        return 65535.0  # the file said 16 bits: a dark 16-bit image stays dark
    return next((s for s in FULL_SCALES[mode] if brightest <= s), FULL_SCALES[mode][-1])


def high_depth_to_8bit(img: Image.Image) -> Image.Image:
    """I;16*, I or F -> L (or LA when a PNG tRNS value marks transparent pixels), scaled to 0..255."""
    values = np.nan_to_num(np.asarray(img, dtype=np.float64), nan=0.0)  # (H, W)
    scale = 255.0 / full_scale(img.mode, float(values.max(initial=0.0)))
    gray = Image.fromarray(np.clip(np.rint(values * scale), 0, 255).astype(np.uint8), "L")
    if "transparency" not in img.info:
        return gray
    alpha = Image.fromarray(np.where(values == img.info["transparency"], 0, 255).astype(np.uint8), "L")
    gray.putalpha(alpha)
    return gray


def to_rgb_on_white(img: Image.Image) -> Image.Image:
    """Any mode -> RGB as a viewer shows it: high bit depths scaled (not clipped) to 8 bits, transparent
    pixels composited on white (not black, which `convert` gives)."""
    if img.mode in HIGH_DEPTH_MODES:
        img = high_depth_to_8bit(img)
    elif img.mode in PREMULTIPLIED_MODES:
        img = img.convert(PREMULTIPLIED_MODES[img.mode])
    if has_transparency(img):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def square_image(img: Image.Image, image_size: int) -> Image.Image:
    """EXIF orientation applied, RGB on white, resized so the short side is `image_size`, center-cropped
    to `image_size` x `image_size`."""
    try:
        img = ImageOps.exif_transpose(img)
    except Exception:  # noqa: BLE001 - a damaged EXIF block (Pillow raises SyntaxError, ValueError, ...)
        pass  # the pixels decoded fine: keep the image as stored rather than lose it over its metadata
    img = to_rgb_on_white(img)
    return ImageOps.fit(img, (image_size, image_size), method=RESAMPLE, centering=(0.5, 0.5))


def open_image_fully(path) -> Image.Image:
    """Open and decode the whole file now, so a truncated or corrupt image fails here (OSError or
    PIL.UnidentifiedImageError) instead of later inside a training step."""
    with Image.open(path) as img:
        img.load()
        return img.copy() if img.mode != "P" else img.convert("RGBA")
