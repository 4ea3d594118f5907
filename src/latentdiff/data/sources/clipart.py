"""`clipart`: the public-domain drawings of openclipart-svg (/usr/share/openclipart/svg/), rendered with
cairosvg at the target size on white, captioned "title, keyword, keyword" and "title".

What the data looks like decided the rules (Debian's openclipart-svg 0.18, 7,458 files + 663 symlinks):
  - 1,375 files titled "gramastar" (keywords stars/magick) are program-generated stars: dropped.
  - ~1,500 files from icon themes (Flat Icon Collection, Lemon SVG theme, Etiquette Icons, gold-theme,
    plastik, blueberry iconset; keyword "theme") are generic UI icons: dropped.
  - 118 "SVG Gradient Collection" files are colour swatches without a subject: dropped.
  - Many titles name a collection, not the drawing ("AIGA_Symbol_Signs", "card", "Various Cliparts",
    "Clipart by Nicu Buculei - book_01" on a telephone): when one title is shared by several drawings
    with different file names, the file name (minus the author's name) names the drawing instead.
Every dropped or unrenderable file is recorded in the manifest with its reason.
"""

from __future__ import annotations

import html
import io
import os
import re
import signal
import threading
from collections import Counter
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from PIL import Image

from latentdiff.data.sources import require_english_only, require_system_path
from latentdiff.data.writer import SkipItem, Skipped, SourceItem, SourceResult

SVG_DIR = "/usr/share/openclipart/svg"
PACKAGE = "openclipart-svg"
MAX_SVG_BYTES = 4 * 1024 * 1024  # the largest drawing in the package is 1.7 MB; bigger is pathological
RENDER_TIMEOUT_S = 20  # per drawing; the slowest real one takes well under a second here
COLLECTION_MIN_FILES = 5  # a title shared by this many differently-named files names a collection
MAX_KEYWORDS = 5
METADATA_PEEK_BYTES = 64 * 1024  # Inkscape and Illustrator write <metadata> near the top

GENERATED_STAR_TITLES = {"gramastar"}
ICON_THEME_TITLE = re.compile(r"icon collection|icon.?theme|svg theme|-theme\b|etiquette icons|iconset", re.I)
GRADIENT_TITLE = re.compile(r"^svg gradient collection", re.I)
AUTHOR_PREFIX = re.compile(r"^clipart by [^-]+ - ", re.I)  # "Clipart by Nicu Buculei - book_01"
# Keywords that say nothing about the picture.
NOISE_KEYWORDS = {"", "hash", "unsorted", "clip art", "clipart", "svg", "image", "media", "icon", "icons",
                  "mapsym", "networksym", "appicon"}

WORK = re.compile(r"<cc:Work\b.*?</cc:Work>", re.S)
TITLE = re.compile(r"<dc:title>(.*?)</dc:title>", re.S)
SUBJECT = re.compile(r"<dc:subject>(.*?)</dc:subject>", re.S)
LIST_ITEM = re.compile(r"<rdf:li>(.*?)</rdf:li>", re.S)
CREATOR = re.compile(r"<dc:creator>.*?<dc:title>(.*?)</dc:title>", re.S)


@dataclass
class Drawing:
    path: Path
    relpath: str
    title: str = ""
    keywords: list[str] = field(default_factory=list)
    creator: str = ""


def read_metadata(path: Path, relpath: str) -> Drawing:
    with open(path, "rb") as fh:
        text = fh.read(METADATA_PEEK_BYTES).decode("utf-8", errors="replace")
        if "</cc:Work>" not in text:  # metadata further down (or none): read the rest
            text += fh.read().decode("utf-8", errors="replace")
    work = WORK.search(text)
    drawing = Drawing(path, relpath)
    if work:
        block = work.group(0)
        title = TITLE.search(block)
        drawing.title = html.unescape(title.group(1)).strip() if title else ""
        subject = SUBJECT.search(block)
        if subject:
            drawing.keywords = [html.unescape(k).strip() for k in LIST_ITEM.findall(subject.group(1))]
        creator = CREATOR.search(block)
        drawing.creator = html.unescape(creator.group(1)).strip() if creator else ""
    return drawing


def drop_reason(drawing: Drawing) -> str | None:
    keywords = {k.lower() for k in drawing.keywords}
    if drawing.title.lower() in GENERATED_STAR_TITLES or {"stars", "magick"} <= keywords:
        return f"generated star (title '{drawing.title}', keywords stars/magick)"
    if "theme" in keywords or ICON_THEME_TITLE.search(drawing.title):
        return f"generic icon theme ('{drawing.title}')"
    if GRADIENT_TITLE.search(drawing.title):
        return "gradient swatch without a subject"
    return None


def clean_words(text: str) -> str:
    """'jigsaw_red_10' -> 'jigsaw red'; 'x hatch 3 pattern' -> 'x hatch pattern'; lowercase."""
    text = text.replace("_", " ").lower()
    if " " not in text:
        text = text.replace("-", " ")  # 'arrow-right-purple' is a file-name-like title
    words = [re.sub(r"(?<=[a-z])\d+$", "", word) for word in text.split() if not word.isdigit()]
    return " ".join(word for word in words if word).strip(" ,.-")


def name_from_file(drawing: Drawing) -> str:
    """File stem minus the author's name: 'acquila_architetto_franc_01' by Architetto Francesco Rollandin
    -> 'acquila'."""
    author = [token for token in re.split(r"[^a-z]+", drawing.creator.lower()) if token]
    words = []
    for word in re.split(r"[_\-\s.]+", drawing.path.stem.lower()):
        word = re.sub(r"\d+$", "", word)
        if not word or any(len(word) >= 3 and token.startswith(word) for token in author):
            continue
        words.append(word)
    while len(words) > 1 and len(words[-1]) == 1:  # '_r', '_b' variant suffixes
        words.pop()
    return " ".join(words)


def captions_for(drawing: Drawing, collection_titles: set[str]) -> list[str]:
    title = drawing.title
    extra: list[str] = []
    if AUTHOR_PREFIX.search(title):
        name = name_from_file(drawing)  # the part after the author is the batch's first file, not this one
    elif not clean_words(title) or title in collection_titles:
        name = name_from_file(drawing)
        extra = [clean_words(title)] if clean_words(title) else []
    else:
        name = clean_words(title)
    if not name:
        name = clean_words(title) or name_from_file(drawing)
    keywords: list[str] = []
    author = drawing.creator.lower()
    for keyword in extra + [clean_words(k) for k in drawing.keywords]:
        if (keyword in NOISE_KEYWORDS or keyword == name or keyword in keywords or keyword.isdigit()
                or keyword.startswith("hash(") or (author and keyword == author)):
            continue
        keywords.append(keyword)
    keywords = keywords[:MAX_KEYWORDS]
    full = ", ".join([name] + keywords)
    return [full, name] if keywords else [name]


class _RenderTimeout(Exception):
    pass


def _on_alarm(signum, frame):
    raise _RenderTimeout()


def render_svg(path: Path, size: int) -> Image.Image:
    """The drawing on a transparent `size` x `size` canvas, its longer side `size` (no cropping).
    Any failure becomes a ValueError, which the writer records as a skipped item."""
    import cairosvg  # here: it loads the system's cairo library, which only this source needs

    data = path.read_bytes()
    use_alarm = threading.current_thread() is threading.main_thread() and hasattr(signal, "SIGALRM")
    previous = signal.signal(signal.SIGALRM, _on_alarm) if use_alarm else None
    if use_alarm:
        signal.alarm(RENDER_TIMEOUT_S)
    try:
        # unsafe=False (the default): no external files, no XML entities, no huge trees.
        png = cairosvg.svg2png(bytestring=data, output_width=size)
        image = Image.open(io.BytesIO(png))
        if image.height > image.width:  # portrait: render again with the height as the long side
            png = cairosvg.svg2png(bytestring=data, output_height=size)
            image = Image.open(io.BytesIO(png))
        image = image.convert("RGBA")
    except _RenderTimeout:
        raise SkipItem(f"SVG rendering took longer than {RENDER_TIMEOUT_S} s") from None
    except Exception as err:  # cairosvg raises many kinds (XML, parsing, cairo) for broken drawings
        raise SkipItem(f"SVG render failed ({type(err).__name__}: {str(err)[:120]})") from None
    finally:
        if use_alarm:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, previous)
    canvas = Image.new("RGBA", (size, size), (255, 255, 255, 0))
    canvas.paste(image, ((size - image.width) // 2, (size - image.height) // 2))
    on_white = Image.alpha_composite(Image.new("RGBA", canvas.size, (255, 255, 255, 255)), canvas)
    if on_white.convert("L").getextrema() == (255, 255):
        raise SkipItem("SVG renders blank (nothing but white or transparent)")
    return canvas


def list_files(root: Path) -> list[Path]:
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        files.extend(Path(dirpath) / name for name in sorted(filenames) if name.lower().endswith(".svg"))
    return files


def read(*, image_size: int, languages: list[str] = ("en",)) -> SourceResult:
    require_english_only(languages, "clipart")
    root = require_system_path(SVG_DIR, PACKAGE, "clipart")
    files = list_files(root)
    if not files:
        require_system_path(root / "animals", PACKAGE, "clipart")
    skipped: list[Skipped] = []
    drawings: list[Drawing] = []
    for path in files:
        relpath = path.relative_to(root).as_posix()
        if path.is_symlink():
            target = path.resolve()
            shown = target.relative_to(root).as_posix() if target.is_relative_to(root) else str(target)
            skipped.append(Skipped(f"{relpath} -> {shown}", "link to another file of the package (kept once)"))
            continue
        size_bytes = path.stat().st_size
        if size_bytes > MAX_SVG_BYTES:
            skipped.append(Skipped(relpath, f"file too large ({size_bytes / 2**20:.2f} MB > "
                                            f"{MAX_SVG_BYTES / 2**20:.2f} MB)"))
            continue
        drawing = read_metadata(path, relpath)
        reason = drop_reason(drawing)
        if reason:
            skipped.append(Skipped(relpath, reason))
            continue
        drawings.append(drawing)
    # A title shared by several drawings with different file names is a collection's name.
    names_by_title: dict[str, set[str]] = {}
    for drawing in drawings:
        names_by_title.setdefault(drawing.title, set()).add(name_from_file(drawing))
    title_counts = Counter(drawing.title for drawing in drawings)
    collection_titles = {title for title, n in title_counts.items()
                         if n >= COLLECTION_MIN_FILES and len(names_by_title[title]) >= COLLECTION_MIN_FILES}
    items = [SourceItem(key=drawing.relpath, load_image=partial(render_svg, drawing.path, image_size),
                        captions=captions_for(drawing, collection_titles)) for drawing in drawings]
    return SourceResult(source="clipart", items=items, skipped=skipped, num_items=len(items),
                        info={"svg_dir": SVG_DIR, "num_svg_files": len(files)})
