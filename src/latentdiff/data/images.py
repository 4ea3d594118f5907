"""Image normalisation shared by every source: what a prepared dataset's images are made of."""

from __future__ import annotations

from PIL import Image, ImageOps

# Lanczos is the sharpest of Pillow's filters for downscaling, which is what nearly every source needs.
RESAMPLE = Image.Resampling.LANCZOS


def has_transparency(img: Image.Image) -> bool:
    return img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info)


def to_rgb_on_white(img: Image.Image) -> Image.Image:
    """Any mode -> RGB; transparent pixels are composited on white (not black, which `convert` gives)."""
    if has_transparency(img):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def square_image(img: Image.Image, image_size: int) -> Image.Image:
    """EXIF orientation applied, RGB on white, resized so the short side is `image_size`, center-cropped
    to `image_size` x `image_size`."""
    img = ImageOps.exif_transpose(img)
    img = to_rgb_on_white(img)
    return ImageOps.fit(img, (image_size, image_size), method=RESAMPLE, centering=(0.5, 0.5))


def open_image_fully(path) -> Image.Image:
    """Open and decode the whole file now, so a truncated or corrupt image fails here (OSError or
    PIL.UnidentifiedImageError) instead of later inside a training step."""
    with Image.open(path) as img:
        img.load()
        return img.copy() if img.mode != "P" else img.convert("RGBA")
