"""`prepare-data folder`: images with .txt sidecars, a metadata.jsonl (imagefolder style, with split
folders), or a CSV with image and caption columns; tiny fixtures incl. RGBA and palette images."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from PIL import Image

from latentdiff.config import PrepareDataConfig
from latentdiff.data.prepared import open_prepared
from latentdiff.errors import UserError
from latentdiff.stages import prepare_data

IMAGE_SIZE = 16
WHITE = (255, 255, 255)


def _rgb(path: Path, color=(200, 30, 30)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (20, 20), color).save(path)


def _rgba_half_transparent(path: Path) -> None:
    """Left half opaque green, right half fully transparent (black underneath, which must not show)."""
    img = Image.new("RGBA", (20, 20), (0, 0, 0, 0))
    img.paste((0, 200, 0, 255), (0, 0, 10, 20))
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


def _palette_with_transparency(path: Path) -> None:
    """Palette image: index 0 transparent (its colour black), index 1 blue (top half)."""
    img = Image.new("P", (20, 20), 0)
    img.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)
    img.paste(1, (0, 0, 20, 10))
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, transparency=0)


def prepare(root: Path, out: Path) -> dict:
    return prepare_data.run(PrepareDataConfig(source="folder", path=str(root), out=str(out), image_size=IMAGE_SIZE))


def records(out: Path) -> dict:
    ds = open_prepared(out)
    return {r.id: (split, r.captions, r.path) for split in ("train", "validation", "test") for r in ds.records(split)}


def skipped(manifest: dict) -> dict[str, str]:
    return {s["item"]: s["reason"] for s in manifest["skipped"]}


def test_sidecars_give_one_caption_per_line_and_rgb_on_white(tmp_path):
    root = tmp_path / "pics"
    _rgb(root / "a.jpg")
    (root / "a.txt").write_text("a red square\n\n  a   red   tile \n")
    _rgba_half_transparent(root / "sub" / "b.png")
    (root / "sub" / "b.txt").write_text("green on the left\n")
    _palette_with_transparency(root / "c.gif")
    (root / "c.caption").write_text("blue on top\n")
    _rgb(root / "d.jpg")  # no sidecar
    _rgb(root / "e.jpg")
    (root / "e.txt").write_text("\n  \n")  # only blank lines
    _rgb(root / "f.png", (10, 10, 10))
    (root / "f.txt").write_text("".join(f"caption {i}\n" for i in range(7)))
    manifest = prepare(root, tmp_path / "out")
    assert manifest["layout"] == "sidecars"
    got = records(tmp_path / "out")
    assert {k: v[1] for k, v in got.items()} == {
        "a.jpg": ["a red square", "a red tile"], "sub/b.png": ["green on the left"], "c.gif": ["blue on top"],
        "f.png": [f"caption {i}" for i in range(5)]}
    assert manifest["captions_over_limit_dropped"] == 2
    assert sorted(skipped(manifest)) == ["d.jpg", "e.jpg"]
    assert skipped(manifest)["d.jpg"].startswith("no caption file")
    assert skipped(manifest)["e.jpg"].startswith("no usable caption")
    with Image.open(got["sub/b.png"][2]) as img:
        assert img.mode == "RGB" and img.size == (IMAGE_SIZE, IMAGE_SIZE)
        assert img.getpixel((IMAGE_SIZE - 1, IMAGE_SIZE // 2)) == WHITE  # transparent -> white, not black
        left = img.getpixel((0, IMAGE_SIZE // 2))
        assert left[1] > 150 and left[0] < 60
    with Image.open(got["c.gif"][2]) as img:
        assert img.getpixel((IMAGE_SIZE // 2, IMAGE_SIZE - 1)) == WHITE
        top = img.getpixel((IMAGE_SIZE // 2, 0))
        assert top[2] > 200 and top[0] < 60


def test_sidecars_in_split_folders_keep_their_splits(tmp_path):
    root = tmp_path / "pics"
    for split, folder in (("train", "train"), ("validation", "val"), ("test", "test")):
        for i in range(2):
            _rgb(root / folder / f"{i}.png", (40 * i, 90, 9))
            (root / folder / f"{i}.txt").write_text(f"{split} picture {i}\n")
    prepare(root, tmp_path / "out")
    got = records(tmp_path / "out")
    assert {k: v[0] for k, v in got.items()} == {
        "train/0.png": "train", "train/1.png": "train", "val/0.png": "validation", "val/1.png": "validation",
        "test/0.png": "test", "test/1.png": "test"}


def test_metadata_jsonl_in_split_folders(tmp_path):
    root = tmp_path / "hf"
    for split, n in (("train", 3), ("validation", 1), ("test", 1)):
        for i in range(n):
            _rgb(root / split / "img" / f"{i}.jpg", (50 * i, 20, 200))
    (root / "train" / "metadata.jsonl").write_text("\n".join([
        json.dumps({"file_name": "img/0.jpg", "text": "one caption"}),
        json.dumps({"file_name": "img/1.jpg", "text": ["first", "second", ""]}),
        "{not json",  # line 3: malformed
        "",  # blank line: ignored
        json.dumps({"file_name": "img/missing.jpg", "text": "gone"}),  # line 5: file not found
        json.dumps({"file_name": "img/2.jpg", "text": "  "}),  # line 6: empty caption
        json.dumps({"file_name": "img/0.jpg", "text": "one caption"}),  # line 7: duplicate
        json.dumps({"file_name": "img/1.jpg", "text": "third"}),  # adds a caption
    ]) + "\n")
    (root / "validation" / "metadata.jsonl").write_text(json.dumps({"file_name": "img/0.jpg", "text": "v"}) + "\n")
    (root / "test" / "metadata.jsonl").write_text(json.dumps({"file_name": "img/0.jpg", "text": "t"}) + "\n")
    manifest = prepare(root, tmp_path / "out")
    assert manifest["layout"] == "metadata.jsonl"
    assert manifest["counts"] == {"train": 2, "validation": 1, "test": 1}
    got = records(tmp_path / "out")
    assert got["train/img/1.jpg"][:2] == ("train", ["first", "second", "third"])
    reasons = skipped(manifest)
    assert sorted(reasons) == ["train/img/missing.jpg", "train/metadata.jsonl line 3",
                               "train/metadata.jsonl line 6", "train/metadata.jsonl line 7"]
    assert reasons["train/metadata.jsonl line 3"].startswith("malformed line")
    assert reasons["train/img/missing.jpg"].startswith("image file not found")
    assert reasons["train/metadata.jsonl line 6"].startswith("empty caption")
    assert reasons["train/metadata.jsonl line 7"].startswith("duplicate entry")


def test_jsonl_split_field_and_unknown_split_names(tmp_path):
    root = tmp_path / "d"
    for i in range(3):
        _rgb(root / f"{i}.png", (i * 70, 0, 0))
    rows = [{"file_name": "0.png", "text": "a", "split": "dev"}, {"file_name": "1.png", "text": "b", "split": "TRAIN"},
            {"file_name": "2.png", "text": "c", "split": "holdout"}]
    (root / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    manifest = prepare(root, tmp_path / "out")
    assert {k: v[0] for k, v in records(tmp_path / "out").items()} == {"0.png": "validation", "1.png": "train"}
    assert skipped(manifest)["metadata.jsonl line 3"].startswith("unknown split name")


def test_csv_with_common_column_names_and_one_row_per_caption(tmp_path):
    root = tmp_path / "c"
    _rgb(root / "images" / "x.jpg")
    _rgb(root / "images" / "y.jpg", (1, 2, 3))
    with open(root / "captions.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["Filename", "Prompt", "score"])
        writer.writerow(["images/x.jpg", 'a "quoted", comma caption', "1"])
        writer.writerow(["images/x.jpg", "second caption", "2"])
        writer.writerow(["images/y.jpg", "only one"])  # line 4: wrong number of columns
        writer.writerow(["images/nope.jpg", "missing", "3"])
        writer.writerow(["images/y.jpg", "why", "4"])
    manifest = prepare(root, tmp_path / "out")
    assert manifest["layout"] == "csv"
    got = records(tmp_path / "out")
    assert {k: v[1] for k, v in got.items()} == {"images/x.jpg": ['a "quoted", comma caption', "second caption"],
                                                 "images/y.jpg": ["why"]}
    reasons = skipped(manifest)
    assert sorted(reasons) == ["captions.csv line 4", "images/nope.jpg"]
    assert reasons["captions.csv line 4"].startswith("malformed line")


def test_csv_without_known_columns_names_the_columns_found(tmp_path):
    root = tmp_path / "c"
    _rgb(root / "x.jpg")
    (root / "data.csv").write_text("picture,words\nx.jpg,hello\n")
    with pytest.raises(UserError, match="picture, words"):
        prepare(root, tmp_path / "out")


def test_a_folder_without_captions_is_one_sentence(tmp_path):
    root = tmp_path / "empty"
    _rgb(root / "x.jpg")
    with pytest.raises(UserError, match="metadata.jsonl"):
        prepare(root, tmp_path / "out")


def test_a_header_claiming_billions_of_pixels_is_skipped_not_fatal(tmp_path):
    root = tmp_path / "pics"
    _rgb(root / "ok.png")
    (root / "ok.txt").write_text("fine\n")
    Image.new("RGB", (4, 4)).save(root / "bomb.bmp")
    data = bytearray((root / "bomb.bmp").read_bytes())
    data[18:26] = (200_000).to_bytes(4, "little") * 2  # width and height fields of the BMP header
    (root / "bomb.bmp").write_bytes(bytes(data))
    (root / "bomb.txt").write_text("a corrupt header\n")
    manifest = prepare(root, tmp_path / "out")
    assert sum(manifest["counts"].values()) == 1
    assert skipped(manifest)["bomb.bmp"].startswith("unreadable image (DecompressionBombError")


@pytest.mark.parametrize("num_images", [3, 12])
def test_small_folder_gets_every_split_with_the_right_images(tmp_path, num_images):
    """A 12-image folder gave 11/1/0 and `evaluate` refused its empty test split."""
    root = tmp_path / "pics"
    for i in range(num_images):
        _rgb(root / f"{i}.png", (20 * i, 0, 0))
        (root / f"{i}.txt").write_text(f"picture {i}\n")
    manifest = prepare(root, tmp_path / "out")
    assert all(manifest["counts"][split] >= 1 for split in ("train", "validation", "test")), manifest["counts"]
    assert sum(manifest["counts"].values()) == num_images
    for _, captions, path in records(tmp_path / "out").values():  # each moved file still shows its own picture
        number = int(captions[0].split()[1])
        assert Image.open(path).convert("RGB").getpixel((8, 8)) == (20 * number, 0, 0)


@pytest.mark.parametrize("layout", ["jsonl", "csv"])
def test_root_metadata_naming_split_folders_keeps_their_splits(tmp_path, layout):
    """A metadata file at PATH naming `train/..` and `test/..` images: the split folders decide, not the
    hash of the path (which put test images into train and train ones into validation)."""
    root = tmp_path / "d"
    names = [f"{split}/{i}.png" for split in ("train", "test") for i in range(4)]
    for i, name in enumerate(names):
        _rgb(root / name, (30 * i, 0, 0))
    if layout == "jsonl":
        (root / "metadata.jsonl").write_text("".join(json.dumps({"file_name": n, "text": f"picture {n}"}) + "\n"
                                                     for n in names))
    else:
        (root / "metadata.csv").write_text("file_name,text\n" + "".join(f"{n},picture {n}\n" for n in names))
    manifest = prepare(root, tmp_path / "out")
    assert {k: v[0] for k, v in records(tmp_path / "out").items()} == {n: n.split("/")[0] for n in names}
    assert manifest["split_origin"] == "official"


def test_captions_not_in_utf8_are_read_by_their_mark_or_skipped_with_the_reason(tmp_path):
    """UTF-16 (with its byte order mark, as Notepad saves it) is read right; a cp1252 sidecar is skipped
    with the reason, never turned into 'Cr\ufffdme br\ufffdl\ufffde'."""
    root = tmp_path / "pics"
    for name in ("utf16", "bom8", "cp1252", "plain"):
        _rgb(root / f"{name}.png")
    (root / "utf16.txt").write_bytes("Crème brûlée\r\nA second line\r\n".encode("utf-16"))
    (root / "bom8.txt").write_bytes("Crème brûlée\n".encode("utf-8-sig"))
    (root / "cp1252.txt").write_bytes("fine\nCrème brûlée\n".encode("cp1252"))
    (root / "plain.txt").write_text("Crème brûlée\n", encoding="utf-8")
    manifest = prepare(root, tmp_path / "out")
    assert {k: v[1] for k, v in records(tmp_path / "out").items()} == {
        "utf16.png": ["Crème brûlée", "A second line"], "bom8.png": ["Crème brûlée"], "plain.png": ["Crème brûlée"]}
    assert skipped(manifest) == {"cp1252.png": "caption file is not UTF-8 text: save it as UTF-8 "
                                               "(cp1252.txt, line 2, byte 0xe8)"}


def test_a_csv_not_in_utf8_is_one_sentence_and_a_utf16_one_is_read(tmp_path, capsys):
    from latentdiff import cli

    root = tmp_path / "c"
    _rgb(root / "x.png")
    # Excel's "Unicode Text": UTF-16 with a byte order mark, tab separated.
    (root / "metadata.csv").write_bytes("file_name\ttext\r\nx.png\tCrème brûlée\r\n".encode("utf-16"))
    prepare(root, tmp_path / "out")
    assert {k: v[1] for k, v in records(tmp_path / "out").items()} == {"x.png": ["Crème brûlée"]}
    # Excel's plain "CSV": cp1252.
    (root / "metadata.csv").write_bytes("file_name,text\nx.png,Crème brûlée\n".encode("cp1252"))
    capsys.readouterr()
    assert cli.main(["prepare-data", "folder", str(root), "--out", str(tmp_path / "out2")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "metadata.csv is not UTF-8 text (line 2, byte 0xe8); save it as UTF-8" in err


def test_symlinked_folders_are_walked_with_follow_symlinks_and_listed_without(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    _rgb(elsewhere / "b.png")
    (elsewhere / "b.txt").write_text("kept on another disk\n")
    root = tmp_path / "pics"
    _rgb(root / "a.png")
    (root / "a.txt").write_text("here\n")
    (root / "linked").symlink_to(elsewhere, target_is_directory=True)
    (root / "sub").mkdir()
    (root / "sub" / "loop").symlink_to(root, target_is_directory=True)  # must not be walked for ever
    manifest = prepare(root, tmp_path / "out")
    assert set(records(tmp_path / "out")) == {"a.png"}
    reasons = skipped(manifest)
    assert sorted(reasons) == ["linked", "sub/loop"]
    assert all(r.startswith("symlinked folder, not read; pass --follow-symlinks") for r in reasons.values())
    manifest = prepare_data.run(PrepareDataConfig(source="folder", path=str(root), out=str(tmp_path / "out2"),
                                                  image_size=IMAGE_SIZE, follow_symlinks=True))
    assert {k: v[1] for k, v in records(tmp_path / "out2").items()} == {
        "a.png": ["here"], "linked/b.png": ["kept on another disk"]}
    assert list(skipped(manifest)) == ["sub/loop"]
    assert skipped(manifest)["sub/loop"].startswith("folder already read (a symlink loop")
    only_links = tmp_path / "only-links"  # nothing else to read: the one sentence says what would
    only_links.mkdir()
    (only_links / "linked").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(UserError, match=r"symlinked folders \(linked\); pass --follow-symlinks"):
        prepare(only_links, tmp_path / "out3")


def test_duplicate_captions_are_listed_not_dropped_silently(tmp_path):
    root = tmp_path / "pics"
    _rgb(root / "a.png")
    (root / "a.txt").write_text("a cat\na  cat \nA dog\n")
    manifest = prepare(root, tmp_path / "out")
    assert records(tmp_path / "out")["a.png"][1] == ["a cat", "A dog"]
    assert skipped(manifest) == {"a.txt line 2": "duplicate caption (repeats another caption of a.png)"}
    meta = tmp_path / "meta"
    _rgb(meta / "a.png")
    (meta / "metadata.jsonl").write_text(json.dumps({"file_name": "a.png", "text": ["x", "y", "x"]}) + "\n")
    manifest = prepare(meta, tmp_path / "out2")
    assert records(tmp_path / "out2")["a.png"][1] == ["x", "y"]
    assert skipped(manifest) == {"metadata.jsonl line 1": "duplicate caption ('x' repeats another caption of a.png)"}


def test_an_upper_case_sidecar_is_found(tmp_path):
    root = tmp_path / "pics"
    _rgb(root / "f.png")
    (root / "f.TXT").write_text("from a camera\n")
    _rgb(root / "g.JPG")
    (root / "g.Caption").write_text("mixed case\n")
    manifest = prepare(root, tmp_path / "out")
    assert {k: v[1] for k, v in records(tmp_path / "out").items()} == {
        "f.png": ["from a camera"], "g.JPG": ["mixed case"]}
    assert manifest["skipped"] == []


def test_one_image_spelled_two_ways_in_metadata_is_kept_once(tmp_path):
    root = tmp_path / "d"
    _rgb(root / "train" / "t0.png")
    rows = [{"file_name": "train/t0.png", "text": "a"}, {"file_name": "train/../train/t0.png", "text": "b"},
            {"file_name": "./train//t0.png", "text": "a"}, {"file_name": "../d/train/t0.png", "text": "c"},
            {"file_name": str(root / "train" / "t0.png"), "text": "d"}, {"file_name": "../d.png", "text": "out"}]
    (root / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    _rgb(tmp_path / "d.png")
    manifest = prepare(root, tmp_path / "out")
    assert records(tmp_path / "out")["train/t0.png"][:2] == ("train", ["a", "b", "c", "d"])
    assert sum(manifest["counts"].values()) == 1
    reasons = skipped(manifest)
    assert sorted(reasons) == ["../d.png", "metadata.jsonl line 3"]
    assert reasons["metadata.jsonl line 3"].startswith("duplicate entry (line 1")
    assert reasons["../d.png"].startswith("path leaves the dataset folder")  # confinement kept


def test_a_dataset_prepared_inside_the_source_is_not_read_as_source_on_the_next_run(tmp_path):
    source = tmp_path / "mine"
    for i in range(4):
        _rgb(source / f"img{i}.png", (60 * i, 30, 30))
        (source / f"img{i}.txt").write_text(f"a picture number {i}\n")
    first = prepare(source, source / "prepared")
    again = prepare(source, source / "prepared")  # the same command once more: its own output is no source
    assert sum(again["counts"].values()) == sum(first["counts"].values()) == 4
    assert skipped(again) == {"prepared": "a dataset prepare-data wrote, not read as source images"}
