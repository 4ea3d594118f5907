"""Image normalisation (`latentdiff.data.images`): what every prepared image goes through."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from latentdiff.data.images import open_image_fully, square_image

RED, BLUE, WHITE = (255, 0, 0), (0, 0, 255), (255, 255, 255)


def _red_left_blue_right(width: int = 32, height: int = 16) -> Image.Image:
    img = Image.new("RGB", (width, height), RED)
    img.paste(BLUE, (width // 2, 0, width, height))
    return img


def _close(pixel, color, tolerance=40) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, color))


def test_exif_orientation_is_applied(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # the camera says: rotate 90 degrees clockwise to display
    path = tmp_path / "rotated.jpg"
    _red_left_blue_right().save(path, format="JPEG", quality=95, exif=exif.tobytes())
    out = square_image(open_image_fully(path), 16)
    assert out.size == (16, 16)
    assert _close(out.getpixel((8, 0)), RED) and _close(out.getpixel((8, 15)), BLUE)  # red on top now
    # without the tag the same pixels stay side by side
    plain = tmp_path / "plain.jpg"
    _red_left_blue_right().save(plain, format="JPEG", quality=95)
    out = square_image(open_image_fully(plain), 16)
    assert _close(out.getpixel((0, 8)), RED) and _close(out.getpixel((15, 8)), BLUE)


def test_rgba_is_composited_on_white():
    img = Image.new("RGBA", (20, 20), (0, 0, 0, 0))  # transparent black
    img.paste((0, 200, 0, 255), (0, 0, 10, 20))
    out = square_image(img, 20)
    assert out.mode == "RGB"
    assert out.getpixel((19, 10)) == WHITE
    assert _close(out.getpixel((0, 10)), (0, 200, 0), tolerance=5)


@pytest.mark.parametrize("mode", ["L", "LA", "P", "CMYK", "I;16", "1"])
def test_any_mode_becomes_rgb(mode):
    out = square_image(Image.new("RGB", (10, 6), (90, 120, 30)).convert(mode), 8)
    assert out.mode == "RGB" and out.size == (8, 8)


def test_palette_transparency_becomes_white(tmp_path):
    img = Image.new("P", (10, 10), 0)
    img.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)
    img.paste(1, (0, 0, 10, 5))
    path = tmp_path / "p.png"
    img.save(path, transparency=0)
    out = square_image(open_image_fully(path), 10)
    assert out.getpixel((5, 9)) == WHITE and out.getpixel((5, 0)) == BLUE


@pytest.mark.parametrize("size", [(64, 48), (48, 64), (7, 300), (33, 33)])
def test_exact_output_size_center_crop(size):
    img = _red_left_blue_right(*size) if size[0] > size[1] else Image.new("RGB", size, RED)
    out = square_image(img, 24)
    assert out.size == (24, 24)


def test_center_crop_keeps_the_middle():
    img = Image.new("RGB", (90, 30), RED)
    img.paste(BLUE, (30, 0, 60, 30))  # only the middle third is blue
    out = square_image(img, 12)
    assert all(_close(out.getpixel((x, y)), BLUE) for x in (1, 6, 10) for y in (1, 10))


def test_a_truncated_file_fails_when_opened_not_later(tmp_path):
    buffer = io.BytesIO()
    Image.effect_noise((64, 64), 50).convert("RGB").save(buffer, format="JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(OSError):
        open_image_fully(path)
