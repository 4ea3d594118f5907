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


# Every mode Pillow opens, as `prepare-data folder` writes it: left half and right half of a 32 x 32 image
# (a second colour catches a range that is shifted, clipped or inverted). TRANSPARENT: white, as a viewer
# shows it on a white page.
GRAY_64, GRAY_200 = (64, 64, 64), (200, 200, 200)
GREEN, OLIVE = (0, 200, 0), (90, 120, 30)


def _halves(mode: str, left, right) -> Image.Image:
    img = Image.new(mode, (32, 32), right)
    img.paste(left, (0, 0, 16, 32))
    return img


def _palette(mode: str) -> Image.Image:
    """Index 1 blue on the left, index 0 on the right (transparent through tRNS or the PA alpha)."""
    img = Image.new(mode, (32, 32), 0 if mode == "P" else (0, 0))
    img.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)
    img.paste(1 if mode == "P" else (1, 255), (0, 0, 16, 32))
    return img


def _sixteen_bit(mode: str, left: int, right: int) -> Image.Image:
    img = _halves("I;16", left, right)
    raw = "I;16B" if mode == "I;16B" else "I;16"  # I;16 and I;16L are both little-endian
    return Image.frombytes(mode, img.size, img.tobytes("raw", raw))


# mode: (the image, how it is stored (None: not savable, given in memory), left RGB, right RGB, tolerance)
MODES = {
    "I;16": (lambda: _sixteen_bit("I;16", 64 * 257, 200 * 257), "png", GRAY_64, GRAY_200, 1),
    "I;16 dark": (lambda: _sixteen_bit("I;16", 3 * 257, 10 * 257), "png", (3, 3, 3), (10, 10, 10), 1),
    "I;16 tRNS": (lambda: _sixteen_bit("I;16", 64 * 257, 1234), "png-trns-1234", GRAY_64, WHITE, 1),
    "I;16B": (lambda: _sixteen_bit("I;16B", 64 * 257, 200 * 257), "tiff", GRAY_64, GRAY_200, 1),
    "I;16L": (lambda: _sixteen_bit("I;16L", 64 * 257, 200 * 257), None, GRAY_64, GRAY_200, 1),
    "I 16-bit": (lambda: _halves("I", 64 * 257, 200 * 257), "tiff", GRAY_64, GRAY_200, 1),
    "I 8-bit": (lambda: _halves("I", 64, 200), "tiff", GRAY_64, GRAY_200, 1),
    "F 0..1": (lambda: _halves("F", 0.25, 0.8), "tiff", GRAY_64, (204, 204, 204), 1),
    "F 0..255": (lambda: _halves("F", 64.0, 200.0), "tiff", GRAY_64, GRAY_200, 1),
    "P tRNS": (lambda: _palette("P"), "png-trns-0", BLUE, WHITE, 1),
    "PA": (lambda: _palette("PA"), "tiff", BLUE, WHITE, 1),
    "LA": (lambda: _halves("LA", (64, 255), (0, 0)), "png", GRAY_64, WHITE, 1),
    "La": (lambda: _halves("La", (64, 255), (0, 0)), None, GRAY_64, WHITE, 1),
    "RGBA": (lambda: _halves("RGBA", (*GREEN, 255), (0, 0, 0, 0)), "png", GREEN, WHITE, 1),
    "RGBa": (lambda: _halves("RGBa", (*GREEN, 255), (0, 0, 0, 0)), None, GREEN, WHITE, 1),
    "CMYK": (lambda: _halves("RGB", OLIVE, RED).convert("CMYK"), "tiff", OLIVE, RED, 1),
    "CMYK jpeg": (lambda: _halves("RGB", OLIVE, RED).convert("CMYK"), "jpg", OLIVE, RED, 12),
    "1": (lambda: _halves("1", 0, 1), "png", (0, 0, 0), WHITE, 1),
    "L": (lambda: _halves("L", 64, 200), "png", GRAY_64, GRAY_200, 1),
    "RGB": (lambda: _halves("RGB", RED, BLUE), "png", RED, BLUE, 1),
    "YCbCr": (lambda: _halves("RGB", OLIVE, RED).convert("YCbCr"), "tiff", OLIVE, RED, 4),
    "LAB": (lambda: _halves("RGB", OLIVE, RED).convert("LAB"), "tiff", OLIVE, RED, 6),  # 8-bit Lab rounds
    "HSV": (lambda: _halves("RGB", OLIVE, RED).convert("HSV"), None, OLIVE, RED, 4),
}


def _prepared_image(tmp_path, img: Image.Image, stored: str) -> Image.Image:
    """`img` saved as a file in a folder dataset, run through `prepare-data folder`, the written PNG."""
    from latentdiff.config import PrepareDataConfig
    from latentdiff.data.prepared import open_prepared
    from latentdiff.stages import prepare_data

    root = tmp_path / "pics"
    root.mkdir()
    extension, _, transparent = stored.partition("-trns-")
    path = root / f"x.{extension}"
    img.save(path, **({"transparency": int(transparent)} if transparent else {}))
    with Image.open(path) as reopened:
        assert reopened.mode == img.mode  # the file really holds this mode
    (root / "x.txt").write_text("a picture\n")
    out = tmp_path / "out"
    manifest = prepare_data.run(PrepareDataConfig(source="folder", path=str(root), out=str(out), image_size=16))
    assert manifest["skipped"] == []
    (record,) = [r for split in ("train", "validation", "test") for r in open_prepared(out).records(split)]
    with Image.open(record.path) as written:
        return written.convert("RGB")


@pytest.mark.parametrize("case", MODES)
def test_every_mode_comes_out_as_a_viewer_shows_it(tmp_path, case):
    make, stored, left, right, tolerance = MODES[case]
    img = make()
    out = _prepared_image(tmp_path, img, stored) if stored else square_image(img, 16)
    assert out.mode == "RGB" and out.size == (16, 16)
    assert _close(out.getpixel((3, 8)), left, tolerance), (out.getpixel((3, 8)), left)
    assert _close(out.getpixel((12, 8)), right, tolerance), (out.getpixel((12, 8)), right)
