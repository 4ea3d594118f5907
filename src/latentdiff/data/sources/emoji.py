"""`emoji`: Noto Color Emoji glyphs rendered with Pillow, captioned with the `emoji` package's names.

The `emoji` package names every emoji in 14 languages (`:red_apple:`, `:pomme_rouge:`, `:红苹果:`);
English is always the first caption, and each language asked for with `--languages` adds its name as
another caption of the same image (`language` codes parallel to `text`).
"""

from __future__ import annotations

from functools import partial

from PIL import Image, ImageDraw, ImageFont

from latentdiff.data.sources import require_system_path
from latentdiff.data.writer import SkipItem, Skipped, SourceItem, SourceResult
from latentdiff.errors import UserError

FONT_PATH = "/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf"
FONT_PACKAGE = "fonts-noto-color-emoji"
# Noto Color Emoji is a bitmap (CBDT) font: FreeType loads it only at its one strike size, 109, where
# every glyph is a 136 x 128 bitmap.
FONT_SIZE = 109
GLYPH_WIDTH, GLYPH_HEIGHT = 136, 128
# The languages of the `emoji` package (emoji.LANGUAGES), English first.
ALL_LANGUAGES = ("en", "es", "ja", "ko", "pt", "it", "fr", "de", "fa", "id", "zh", "ru", "tr", "ar")


def resolve_languages(languages: list[str]) -> list[str]:
    """`--languages` -> language codes, English first; `all` means all 14."""
    codes = list(ALL_LANGUAGES) if "all" in languages else list(dict.fromkeys(languages))
    unknown = [code for code in codes if code not in ALL_LANGUAGES]
    if unknown:
        raise UserError(f"Unknown emoji language(s) {', '.join(unknown)}; choose from {', '.join(ALL_LANGUAGES)} "
                        "(comma-separated) or 'all'.")
    return ["en"] + [code for code in codes if code != "en"]


def name_to_caption(name: str) -> str:
    """':pomme_rouge:' -> 'pomme rouge'."""
    return name.strip(":").replace("_", " ").strip()


def emoji_key(char: str) -> str:
    """Stable id from the code points, as in Noto's own file names: '🍎' -> 'u1f34e'."""
    return "u" + "_".join(f"{ord(c):04x}" for c in char)


def fits_one_glyph(font: ImageFont.FreeTypeFont, char: str) -> bool:
    """False for a sequence the font has no ligature for (drawn as several glyphs side by side)."""
    left, _, right, _ = font.getbbox(char)
    return right - left == GLYPH_WIDTH


def render_glyph(font: ImageFont.FreeTypeFont, char: str) -> Image.Image:
    """The glyph as an RGBA square (136 x 136: the 136 x 128 bitmap padded top and bottom so nothing is
    cropped; the writer composites transparent parts on white). SkipItem when the font draws nothing
    (its .notdef glyph is blank), which the writer records as a skipped item."""
    canvas = Image.new("RGBA", (GLYPH_WIDTH, GLYPH_WIDTH), (255, 255, 255, 0))
    pad_top = (GLYPH_WIDTH - GLYPH_HEIGHT) // 2
    ImageDraw.Draw(canvas).text((0, pad_top), char, font=font, embedded_color=True)
    if canvas.getchannel("A").getbbox() is None:
        raise SkipItem(f"the installed {FONT_PACKAGE} font has no glyph for it (blank)")
    return canvas


def read(*, languages: list[str]) -> SourceResult:
    import emoji as emoji_names  # the PyPI package (this module only shares its name)

    require_system_path(FONT_PATH, FONT_PACKAGE, "emoji")
    languages = resolve_languages(languages)
    emoji_names.config.load_language(languages)  # names other than English are loaded on demand
    font = ImageFont.truetype(FONT_PATH, FONT_SIZE)
    fully_qualified = emoji_names.STATUS["fully_qualified"]
    # Only the fully-qualified form of each emoji: the others are the same picture under another code.
    chars = [char for char, data in emoji_names.EMOJI_DATA.items() if data["status"] == fully_qualified]
    skipped: list[Skipped] = []
    items: list[SourceItem] = []
    for char in chars:
        data = emoji_names.EMOJI_DATA[char]
        key = emoji_key(char)
        if not fits_one_glyph(font, char):
            skipped.append(Skipped(f"{key} {data['en']}", f"the installed {FONT_PACKAGE} font cannot draw it "
                                                         "as one glyph (sequence not supported)"))
            continue
        captions, codes = [], []
        for code in languages:
            if code not in data:
                skipped.append(Skipped(f"{key} {data['en']}", f"no '{code}' name in the emoji package "
                                                             "(caption left out, image kept)"))
                continue
            captions.append(name_to_caption(data[code]))
            codes.append(code)
        # Rendered lazily by the writer: a blank glyph raises there and is recorded as skipped.
        items.append(SourceItem(key=key, load_image=partial(render_glyph, font, char), captions=captions,
                                languages=codes))
    return SourceResult(source="emoji", items=items, skipped=skipped, languages=languages, num_items=len(items),
                        info={"font": FONT_PATH, "emoji_package_version": emoji_names.__version__})
