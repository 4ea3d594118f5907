"""The emoji source: Noto Color Emoji glyphs with names in the languages asked for."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from latentdiff.config import PrepareDataConfig
from latentdiff.data.prepared import load_image_array, open_prepared
from latentdiff.data.sources import emoji as emoji_source
from latentdiff.data.writer import SkipItem
from latentdiff.errors import UserError
from latentdiff.stages.prepare_data import run

needs_font = pytest.mark.skipif(not Path(emoji_source.FONT_PATH).exists(),
                                reason="fonts-noto-color-emoji is not installed (run `make setup`)")


def test_language_option():
    assert emoji_source.resolve_languages(["fr", "en", "zh"]) == ["en", "fr", "zh"]
    assert emoji_source.resolve_languages(["all"]) == list(emoji_source.ALL_LANGUAGES)
    assert len(emoji_source.ALL_LANGUAGES) == 14
    with pytest.raises(UserError, match="xx"):
        emoji_source.resolve_languages(["en", "xx"])
    assert emoji_source.name_to_caption(":pomme_rouge:") == "pomme rouge"


@pytest.mark.slow  # 7 s: renders emoji with the installed font
@needs_font
def test_three_languages_in_the_prepared_dataset(tmp_path):
    out = tmp_path / "emoji"
    manifest = run(PrepareDataConfig(source="emoji", out=str(out), languages=["en", "fr", "zh"], max_images=20))
    assert manifest["languages"] == ["en", "fr", "zh"]
    dataset = open_prepared(out)
    records = [r for split in ("train", "validation", "test") for r in dataset.records(split)]
    assert len(records) == 20
    for record in records:
        assert record.languages == ["en", "fr", "zh"]
        assert len(set(record.captions)) == 3
        assert any("\u4e00" <= ch <= "\u9fff" for ch in record.captions[2])  # Chinese characters
        pixels = load_image_array(record.path)
        assert pixels.shape == (64, 64, 3)
        assert tuple(pixels[0, 0]) == (255, 255, 255)  # padded and composited on white, not black
        assert pixels.std() > 10  # a drawn glyph, not a blank square


@pytest.mark.slow  # 6 s: renders emoji with the installed font
@needs_font
def test_red_apple_and_what_is_skipped():
    result = emoji_source.read(languages=["en", "fr", "zh"])
    items = {item.key: item for item in result.items}
    apple = items["u1f34e"]
    assert apple.captions == ["red apple", "pomme rouge", "红苹果"]
    assert apple.languages == ["en", "fr", "zh"]
    image = apple.load_image()
    assert image.size == (136, 136)  # the 136 x 128 glyph padded to a square, nothing cropped
    assert np.asarray(image)[..., 0].mean() > 100  # red dominates
    assert 3500 <= len(items) <= 4100
    reasons = {s.reason for s in result.skipped}
    assert all("cannot draw it" in r or "name in the emoji package" in r for r in reasons)


@needs_font
def test_blank_glyph_is_an_error_the_writer_records():
    from PIL import ImageFont

    font = ImageFont.truetype(emoji_source.FONT_PATH, emoji_source.FONT_SIZE)
    with pytest.raises(SkipItem, match="no glyph"):
        emoji_source.render_glyph(font, "\u0378")  # an unassigned code point: the blank .notdef glyph


@needs_font
def test_missing_name_in_a_language_is_recorded_and_the_image_kept(monkeypatch):
    import emoji

    fully = emoji.STATUS["fully_qualified"]
    fake = {"🍎": {"en": ":red_apple:", "zh": ":红苹果:", "status": fully},
            "🍌": {"en": ":banana:", "fr": ":banane:", "zh": ":香蕉:", "status": fully}}
    monkeypatch.setattr(emoji, "EMOJI_DATA", fake)
    monkeypatch.setattr(emoji.config, "load_language", lambda language=None: None)
    result = emoji_source.read(languages=["en", "fr", "zh"])
    items = {item.key: item for item in result.items}
    assert items["u1f34e"].captions == ["red apple", "红苹果"] and items["u1f34e"].languages == ["en", "zh"]
    assert items["u1f34c"].languages == ["en", "fr", "zh"]
    assert [(s.item, s.reason) for s in result.skipped] == [
        ("u1f34e :red_apple:", "no 'fr' name in the emoji package (caption left out, image kept)")]
