"""The clipart source: titles and keywords as captions; stars, icon themes and broken drawings dropped
with their reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from latentdiff.config import PrepareDataConfig
from latentdiff.data.prepared import load_image_array, open_prepared
from latentdiff.data.sources import clipart
from latentdiff.errors import UserError
from latentdiff.stages.prepare_data import run


def svg(title: str, keywords: list[str], body: str = '<circle cx="50" cy="50" r="40" fill="#d02020"/>',
        creator: str = "Some Artist", width: int = 100, height: int = 100) -> str:
    items = "".join(f"<rdf:li>{k}</rdf:li>" for k in keywords)
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" xmlns:cc="http://web.resource.org/cc/"
     xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"
     width="{width}" height="{height}" viewBox="0 0 {width} {height}">
  <metadata><rdf:RDF><cc:Work rdf:about="">
    <dc:title>{title}</dc:title>
    <dc:subject><rdf:Bag>{items}</rdf:Bag></dc:subject>
    <dc:creator><cc:Agent><dc:title>{creator}</dc:title></cc:Agent></dc:creator>
  </cc:Work></rdf:RDF></metadata>
  {body}
</svg>"""


@pytest.fixture
def tiny_package(tmp_path, monkeypatch):
    root = tmp_path / "svg"
    (root / "food" / "fruit").mkdir(parents=True)
    (root / "shapes" / "stars").mkdir(parents=True)
    (root / "computer" / "icons" / "lemon-theme").mkdir(parents=True)
    (root / "food" / "fruit" / "red_apple_some_artist_01.svg").write_text(svg("Red Apple", ["fruit", "food", "hash"]))
    (root / "food" / "fruit" / "tall_pear.svg").write_text(
        svg("Tall_Pear_2", ["fruit"], '<rect x="10" y="0" width="20" height="100" fill="#20a020"/>', width=40))
    (root / "food" / "apple_link.svg").symlink_to(root / "food" / "fruit" / "red_apple_some_artist_01.svg")
    (root / "shapes" / "stars" / "star_07pt03step.svg").write_text(
        svg("gramastar", ["stars", "shapes", "magick", "geometry"]))
    (root / "computer" / "icons" / "lemon-theme" / "find.svg").write_text(
        svg("Lemon SVG theme", ["icon", "lemon_theme_icon", "computer", "theme"]))
    (root / "food" / "broken.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'><circle r=")  # truncated
    (root / "food" / "blank.svg").write_text(svg("Nothing", ["food"], body=""))
    (root / "food" / "huge.svg").write_text(svg("Huge", ["food"], body="<!--" + "x" * 5000 + "-->"))
    monkeypatch.setattr(clipart, "SVG_DIR", str(root))
    monkeypatch.setattr(clipart, "MAX_SVG_BYTES", 4000)
    return root


def test_kept_dropped_and_captions(tiny_package, tmp_path):
    out = tmp_path / "out"
    manifest = run(PrepareDataConfig(source="clipart", out=str(out)))
    reasons = {s["item"].split(" -> ")[0]: s["reason"] for s in manifest["skipped"]}
    assert set(reasons) == {"food/apple_link.svg", "shapes/stars/star_07pt03step.svg",
                            "computer/icons/lemon-theme/find.svg", "food/broken.svg", "food/blank.svg",
                            "food/huge.svg"}
    assert "generated star" in reasons["shapes/stars/star_07pt03step.svg"]
    assert "icon theme" in reasons["computer/icons/lemon-theme/find.svg"]
    assert "render failed" in reasons["food/broken.svg"]
    assert "blank" in reasons["food/blank.svg"]
    assert "too large" in reasons["food/huge.svg"]
    assert "link" in reasons["food/apple_link.svg"]
    dataset = open_prepared(out)
    records = {r.id: r for split in ("train", "validation", "test") for r in dataset.records(split)}
    assert set(records) == {"food/fruit/red_apple_some_artist_01.svg", "food/fruit/tall_pear.svg"}
    apple = records["food/fruit/red_apple_some_artist_01.svg"]
    assert apple.captions == ["red apple, fruit, food", "red apple"]
    pixels = load_image_array(apple.path)
    assert tuple(pixels[32, 32]) == (208, 32, 32)  # drawn at the target size
    assert tuple(pixels[0, 0]) == (255, 255, 255)  # on white
    pear = load_image_array(records["food/fruit/tall_pear.svg"].path)
    assert records["food/fruit/tall_pear.svg"].captions[1] == "tall pear"
    # A portrait drawing is fitted by its height and padded, not cropped: the bar spans the full height.
    assert pear[1, 32, 1] > 100 and pear[62, 32, 1] > 100 and tuple(pear[32, 2]) == (255, 255, 255)


def test_caption_rules():
    drawing = clipart.Drawing(Path("animals/birds/acquila_architetto_franc_01.svg"), "x", "Various Cliparts",
                              ["bird", "architetto francesco rollandin", "unsorted"], "Architetto Francesco Rollandin")
    assert clipart.name_from_file(drawing) == "acquila"
    assert clipart.captions_for(drawing, {"Various Cliparts"}) == ["acquila, various cliparts, bird", "acquila"]
    nicu = clipart.Drawing(Path("office/telephone/phone.svg"), "x", "Clipart by Nicu Buculei - book_01",
                           ["office", "", "telephone"], "Nicu Buculei")
    assert clipart.captions_for(nicu, set()) == ["phone, office, telephone", "phone"]
    assert clipart.clean_words("x hatch 3 pattern") == "x hatch pattern"
    assert clipart.clean_words("jigsaw_red_10") == "jigsaw red"


def test_missing_package_says_what_to_run(tmp_path, monkeypatch):
    monkeypatch.setattr(clipart, "SVG_DIR", str(tmp_path / "absent"))
    with pytest.raises(UserError, match="apt-get install -y openclipart-svg"):
        clipart.read(image_size=64)


@pytest.mark.slow  # 23 s: renders the installed openclipart package
@pytest.mark.skipif(not Path(clipart.SVG_DIR).exists(), reason="openclipart-svg is not installed (run `make setup`)")
def test_real_package_drops_stars_and_icon_themes(tmp_path):
    result = clipart.read(image_size=64)
    kept = [item.key for item in result.items]
    assert 4000 <= len(kept) <= 4800
    assert not [k for k in kept if "-theme/" in k]
    # Only the few hand-drawn stars stay (estrella, star.svg); the ~1,375 generated ones go.
    assert len([k for k in kept if k.startswith("shapes/stars/")]) <= 5
    reasons = [s.reason for s in result.skipped]
    assert sum("generated star" in r for r in reasons) >= 1000
    assert sum("icon theme" in r for r in reasons) >= 1000
    out = tmp_path / "clipart"
    run(PrepareDataConfig(source="clipart", out=str(out), max_images=8))
    rows = [json.loads(line) for line in (out / "train" / "metadata.jsonl").read_text().splitlines()]
    assert rows and all(row["text"] and row["text"][0] for row in rows)
