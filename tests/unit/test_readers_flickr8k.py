"""Flickr8k in its three layouts (official release, Kaggle, Karpathy), built here as tiny fixtures with the
real quirks: a caption line naming a file that does not exist, a truncated JPEG, a blank line, a malformed
line, a duplicate entry, an empty caption. Every layout must give the same images and captions, and a
manifest listing exactly the bad items."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from latentdiff.config import PrepareDataConfig
from latentdiff.data.prepared import open_prepared
from latentdiff.errors import UserError
from latentdiff.stages import prepare_data

IMAGE_SIZE = 16
# name -> (official split, captions in the release's order). Captions carry commas and quotes (the
# Kaggle CSV must quote them) and Flickr's tokenised " ." endings.
GOOD = {
    "1000_a.jpg": ("train", ["A dog runs , fast .", "A brown dog runs on grass .", 'A dog named "Rex" plays .',
                             "Dog running outside .", "The dog is happy ."]),
    "1001_b.jpg": ("train", ["A red roof above a blue wall .", "Red over blue .", "A two colour picture .",
                             "Something red on top .", "Blue at the bottom ."]),
    "1002_c.jpg": ("train", ["A child climbs stairs .", "A girl in pink , climbing .", "Kid on the stairs .",
                             "A child inside a house .", "Stairs and a child ."]),
    "1003_d.jpg": ("train", ["Two men talk .", "Men chatting on a bench .", "Two people sit .",
                             "Friends on a bench ."]),  # its fifth caption is empty in every layout
    "2000_e.jpg": ("validation", ["A bike on a road .", "Cyclist racing .", "A man rides a bike .",
                                  "Bicycle race .", "Cycling in the sun ."]),
    "2001_f.jpg": ("validation", ["A boat on a lake .", "Sailing boat .", "Water and a boat .",
                                  "A small white boat .", "A boat , floating ."]),
    "3000_g.jpg": ("test", ["A cat sleeps .", "Sleeping cat .", "A cat on a sofa .", "Cat napping .",
                            "A grey cat , asleep ."]),
}
BROKEN = "1004_broken.jpg"  # truncated JPEG (train)
GHOST = "1005_ghost.jpg"  # named in the captions and the split file, no file on disk (train)
BAD_CAPTIONS = ["A broken picture .", "Half an image ."]
EMPTY_CAPTION_OF = "1003_d.jpg"
SPLIT_FILE_NAMES = {"train": "Flickr_8k.trainImages.txt", "validation": "Flickr_8k.devImages.txt",
                    "test": "Flickr_8k.testImages.txt"}


def _jpeg(path: Path, color: tuple[int, int, int], exif_rotated: bool = False) -> None:
    img = Image.new("RGB", (32, 16), color)
    img.paste((255, 0, 0), (0, 0, 16, 16))  # left half red ...
    img.paste((0, 0, 255), (16, 0, 32, 16))  # ... right half blue: shows whether EXIF rotation was applied
    img.paste(color, (12, 4, 20, 12))  # a centre patch that tells the images apart
    if exif_rotated:
        exif = Image.Exif()
        exif[0x0112] = 6  # "rotate 90 degrees clockwise to display": red ends on top
        img.save(path, format="JPEG", quality=95, exif=exif.tobytes())
    else:
        img.save(path, format="JPEG", quality=95)


def _images(folder: Path) -> None:
    folder.mkdir(parents=True)
    for i, name in enumerate(GOOD):
        _jpeg(folder / name, (30 * i, 255 - 30 * i, 100), exif_rotated=(name == "1001_b.jpg"))
    whole = io.BytesIO()
    Image.new("RGB", (64, 64), (0, 200, 0)).save(whole, format="JPEG", quality=95)
    (folder / BROKEN).write_bytes(whole.getvalue()[: len(whole.getvalue()) // 2])


def _all_captions() -> list[tuple[str, str]]:
    """(image, caption) rows in the release's order; the empty caption included, the ghost too."""
    rows = []
    for name, (_, captions) in GOOD.items():
        rows += [(name, c) for c in captions]
        if name == EMPTY_CAPTION_OF:
            rows.append((name, ""))
    rows += [(BROKEN, c) for c in BAD_CAPTIONS] + [(GHOST, "A picture nobody has .")]
    return rows


def _split_files(folder: Path) -> None:
    for split, file_name in SPLIT_FILE_NAMES.items():
        names = [n for n, (s, _) in GOOD.items() if s == split] + ([BROKEN, GHOST] if split == "train" else [])
        (folder / file_name).write_text("\n".join(names) + "\n")


def make_official(root: Path) -> dict[str, str]:
    """Flicker8k_Dataset/ + Flickr8k_text/; returns the expected skipped items -> reason keyword."""
    _images(root / "Flicker8k_Dataset")
    text = root / "Flickr8k_text"
    text.mkdir()
    lines, index = [], {}
    for name, caption in _all_captions():
        index[name] = index.get(name, -1) + 1
        lines.append(f"{name}#{index[name]}\t{caption}")
    lines.insert(3, "")  # blank line: ignored, not an item
    lines.insert(7, "this line names no image")  # malformed: line 8
    lines.insert(12, lines[1])  # duplicate of line 2: line 13
    (text / "Flickr8k.token.txt").write_text("\n".join(lines) + "\n")
    empty_line = lines.index(f"{EMPTY_CAPTION_OF}#4\t") + 1
    _split_files(text)
    return {GHOST: "image file not found", BROKEN: "unreadable image",
            "Flickr8k.token.txt line 8": "malformed line", "Flickr8k.token.txt line 13": "duplicate entry",
            f"Flickr8k.token.txt line {empty_line}": "empty caption"}


def make_kaggle(root: Path, with_split_files: bool = False) -> dict[str, str]:
    """captions.txt (CSV, `image,caption`) + Images/."""
    _images(root / "Images")
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows([("image", "caption"), *_all_captions()])
    lines = buffer.getvalue().splitlines()
    lines.insert(3, "")  # blank line
    lines.insert(7, "no-comma-on-this-line")  # malformed: line 8
    lines.insert(12, lines[1])  # duplicate of line 2: line 13
    (root / "captions.txt").write_text("\n".join(lines) + "\n")
    empty_line = lines.index(f"{EMPTY_CAPTION_OF},") + 1
    if with_split_files:
        _split_files(root)
    return {GHOST: "image file not found", BROKEN: "unreadable image",
            "captions.txt line 8": "malformed line", "captions.txt line 13": "duplicate entry",
            f"captions.txt line {empty_line}": "empty caption"}


def make_karpathy(root: Path) -> dict[str, str]:
    """dataset_flickr8k.json + Images/."""
    _images(root / "Images")
    karpathy_split = {"train": "train", "validation": "val", "test": "test"}
    by_name: dict[str, list[str]] = {}
    for name, caption in _all_captions():
        by_name.setdefault(name, []).append(caption)
    split_of = {name: split for name, (split, _) in GOOD.items()} | {BROKEN: "train", GHOST: "train"}
    images = [{"filename": name, "imgid": i, "split": karpathy_split[split_of[name]],
               "sentences": [{"raw": c, "tokens": c.lower().split()} for c in captions]}
              for i, (name, captions) in enumerate(by_name.items())]
    images.insert(2, {"split": "train", "sentences": []})  # malformed: images[2]
    images.append(dict(images[0]))  # duplicate: images[10]
    images.append({"filename": "9999_z.jpg", "split": "holdout", "sentences": [{"raw": "x"}]})  # images[11]
    (root / "dataset_flickr8k.json").write_text(json.dumps({"dataset": "flickr8k", "images": images}))
    empty_index = next(i for i, e in enumerate(images) if e.get("filename") == EMPTY_CAPTION_OF)
    return {GHOST: "image file not found", BROKEN: "unreadable image",
            "dataset_flickr8k.json images[2]": "malformed entry", "dataset_flickr8k.json images[10]": "duplicate entry",
            "dataset_flickr8k.json images[11]": "unknown split",
            f"dataset_flickr8k.json images[{empty_index}] sentences[4]": "empty caption"}


def prepare(root: Path, out: Path) -> dict:
    cfg = PrepareDataConfig(source="flickr8k", path=str(root), out=str(out), image_size=IMAGE_SIZE)
    return prepare_data.run(cfg)


def tree_bytes(out: Path, only_splits: bool = False) -> dict[str, bytes]:
    files = sorted(p for p in out.rglob("*") if p.is_file())
    if only_splits:
        files = [p for p in files if p.parent != out]
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in files}


def by_image(out: Path) -> dict[str, tuple[list[str], bytes]]:
    """id -> (captions, PNG bytes), whatever split each image went to."""
    ds = open_prepared(out)
    return {r.id: (r.captions, r.path.read_bytes())
            for split in ("train", "validation", "test") for r in ds.records(split)}


def assert_skipped_exactly(manifest: dict, expected: dict[str, str]) -> None:
    got = {s["item"]: s["reason"] for s in manifest["skipped"]}
    assert sorted(got) == sorted(expected), got
    for item, keyword in expected.items():
        assert keyword in got[item], (item, got[item])


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    root = tmp_path_factory.mktemp("official")
    expected = make_official(root)
    out = root.parent / f"{root.name}-out"
    return root, out, prepare(root, out), expected


def test_official_layout_keeps_the_official_splits_and_lists_exactly_the_bad_items(official):
    root, out, manifest, expected = official
    assert manifest["layout"] == "official"
    assert manifest["counts"] == {"train": 4, "validation": 2, "test": 1}
    assert_skipped_exactly(manifest, expected)
    ds = open_prepared(out)
    for split in ("train", "validation", "test"):
        records = ds.records(split)
        assert [r.id for r in records] == sorted(n for n, (s, _) in GOOD.items() if s == split)
        for r in records:
            assert r.captions == GOOD[r.id][1]
            with Image.open(r.path) as img:
                assert img.size == (IMAGE_SIZE, IMAGE_SIZE) and img.mode == "RGB"


def test_exif_orientation_is_applied_on_the_way_in(official):
    _, out, _, _ = official
    record = next(r for r in open_prepared(out).records("train") if r.id == "1001_b.jpg")
    with Image.open(record.path) as img:
        top, bottom = img.getpixel((IMAGE_SIZE // 2, 0)), img.getpixel((IMAGE_SIZE // 2, IMAGE_SIZE - 1))
    assert top[0] > 200 and top[2] < 60, top  # red on top: rotated as the EXIF tag says
    assert bottom[2] > 200 and bottom[0] < 60, bottom


def test_karpathy_layout_gives_the_same_dataset(official, tmp_path):
    _, out, _, _ = official
    expected = make_karpathy(tmp_path / "karpathy")
    manifest = prepare(tmp_path / "karpathy", tmp_path / "out")
    assert manifest["layout"] == "karpathy"
    assert_skipped_exactly(manifest, expected)
    assert tree_bytes(tmp_path / "out", only_splits=True) == tree_bytes(out, only_splits=True)


def test_kaggle_layout_gives_the_same_images_and_captions(official, tmp_path):
    _, out, _, _ = official
    expected = make_kaggle(tmp_path / "kaggle")
    manifest = prepare(tmp_path / "kaggle", tmp_path / "out")
    assert manifest["layout"] == "kaggle"
    assert manifest["split_origin"] == "hash of the image name"  # no split files: the writer's split
    assert_skipped_exactly(manifest, expected)
    assert by_image(tmp_path / "out") == by_image(out)


def test_kaggle_layout_with_split_files_beside_it_keeps_the_official_splits(official, tmp_path):
    _, out, _, _ = official
    expected = make_kaggle(tmp_path / "kaggle", with_split_files=True)
    manifest = prepare(tmp_path / "kaggle", tmp_path / "out")
    assert manifest["split_origin"] == "official"
    assert_skipped_exactly(manifest, expected)
    assert tree_bytes(tmp_path / "out", only_splits=True) == tree_bytes(out, only_splits=True)


def test_same_input_gives_the_same_bytes(tmp_path):
    make_official(tmp_path / "src")
    prepare(tmp_path / "src", tmp_path / "out")
    first = tree_bytes(tmp_path / "out")
    prepare(tmp_path / "src", tmp_path / "out")
    assert tree_bytes(tmp_path / "out") == first
    assert "manifest.json" in first and "train/metadata.jsonl" in first


def test_images_left_out_of_the_split_files_are_skipped_with_that_reason(tmp_path):
    make_official(tmp_path)
    train = tmp_path / "Flickr8k_text" / SPLIT_FILE_NAMES["train"]
    train.write_text(train.read_text().replace("1002_c.jpg\n", ""))
    manifest = prepare(tmp_path, tmp_path.parent / f"{tmp_path.name}-out")
    reasons = {s["item"]: s["reason"] for s in manifest["skipped"]}
    assert reasons["1002_c.jpg"].startswith("not listed in any split file")
    assert manifest["counts"]["train"] == 3


def test_more_than_five_captions_keeps_the_first_five(tmp_path):
    make_official(tmp_path)
    token = tmp_path / "Flickr8k_text" / "Flickr8k.token.txt"
    token.write_text(token.read_text() + "1000_a.jpg#5\tA sixth caption .\n")
    manifest = prepare(tmp_path, tmp_path.parent / f"{tmp_path.name}-out")
    out = tmp_path.parent / f"{tmp_path.name}-out"
    record = next(r for r in open_prepared(out).records("train") if r.id == "1000_a.jpg")
    assert record.captions == GOOD["1000_a.jpg"][1]
    assert manifest["captions_over_limit_dropped"] == 1


def test_imagefolder_loads_the_splits_with_text_as_a_list(official, tmp_path):
    datasets = pytest.importorskip("datasets")
    _, out, _, _ = official
    loaded = datasets.load_dataset("imagefolder", data_dir=str(out), cache_dir=str(tmp_path / "hf"))
    assert {name: len(split) for name, split in loaded.items()} == {"train": 4, "validation": 2, "test": 1}
    row = loaded["train"][0]
    assert row["text"] == GOOD[row["id"]][1]
    assert row["image"].size == (IMAGE_SIZE, IMAGE_SIZE)


def test_a_folder_that_is_no_flickr8k_layout_is_one_sentence(tmp_path):
    (tmp_path / "wrong").mkdir()
    (tmp_path / "wrong" / "notes.txt").write_text("hello\n")
    with pytest.raises(UserError, match="Flickr8k.token.txt"):
        prepare(tmp_path / "wrong", tmp_path / "out")
    proc = subprocess.run([sys.executable, "-m", "latentdiff", "prepare-data", "flickr8k", str(tmp_path / "wrong"),
                           "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "captions.txt" in proc.stderr and "dataset_flickr8k.json" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_captions_without_an_image_folder_name_what_was_looked_for(tmp_path):
    make_kaggle(tmp_path)
    (tmp_path / "Images").rename(tmp_path / "pictures")
    with pytest.raises(UserError, match="Flicker8k_Dataset/"):
        prepare(tmp_path, tmp_path.parent / f"{tmp_path.name}-out")


def test_path_may_be_the_text_folder_beside_the_images(official, tmp_path):
    _, out, _, _ = official
    make_official(tmp_path / "flickr")
    prepare(tmp_path / "flickr" / "Flickr8k_text", tmp_path / "out")
    assert tree_bytes(tmp_path / "out", only_splits=True) == tree_bytes(out, only_splits=True)


def test_kaggle_lines_with_sloppy_quotes_keep_their_caption(tmp_path):
    make_kaggle(tmp_path)
    captions = tmp_path / "captions.txt"
    captions.write_text(captions.read_text() + '3000_g.jpg,"A cat says "meow" , loudly ."\n')
    manifest = prepare(tmp_path, tmp_path.parent / f"{tmp_path.name}-out")
    record = next(r for s in ("train", "validation", "test")
                  for r in open_prepared(tmp_path.parent / f"{tmp_path.name}-out").records(s) if r.id == "3000_g.jpg")
    assert record.captions == GOOD["3000_g.jpg"][1]  # already 5: the sixth is counted, not kept
    assert manifest["captions_over_limit_dropped"] == 1
    assert len(manifest["skipped"]) == 5
    from latentdiff.data.flickr8k import _kaggle_row
    assert _kaggle_row('x.jpg,"A cat says "meow" , loudly ."', 0, 1, 2) == ("x.jpg", 'A cat says "meow" , loudly .')
    assert _kaggle_row('x.jpg,"A ""quoted"" word"', 0, 1, 2) == ("x.jpg", 'A "quoted" word')
    assert _kaggle_row("no comma here", 0, 1, 2) is None


def test_an_unreadable_caption_file_is_one_sentence(tmp_path, monkeypatch, capsys):
    from latentdiff.data import reader_common
    from latentdiff.stages.prepare_data import main

    root = tmp_path / "flickr8k"
    (root / "Images").mkdir(parents=True)
    Image.new("RGB", (8, 8), "red").save(root / "Images" / "a.jpg")
    (root / "captions.txt").write_text("image,caption\na.jpg,a red square\n")

    def denied(path):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(reader_common.Path, "read_text", lambda self, *a, **k: denied(self))
    assert main(["flickr8k", str(root), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "Permission denied" in err and "captions.txt" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_a_caption_repeated_under_another_number_is_listed_as_skipped(tmp_path):
    make_official(tmp_path)
    token = tmp_path / "Flickr8k_text" / "Flickr8k.token.txt"
    text = token.read_text()
    token.write_text(text + f"1000_a.jpg#5\t{GOOD['1000_a.jpg'][1][2]}\n")  # #5 repeats #2
    repeated_line = len(text.splitlines()) + 1
    manifest = prepare(tmp_path, tmp_path.parent / f"{tmp_path.name}-out")
    reasons = {s["item"]: s["reason"] for s in manifest["skipped"]}
    assert reasons[f"Flickr8k.token.txt line {repeated_line}"].startswith("duplicate caption (1000_a.jpg#5")
    record = next(r for r in open_prepared(tmp_path.parent / f"{tmp_path.name}-out").records("train")
                  if r.id == "1000_a.jpg")
    assert record.captions == GOOD["1000_a.jpg"][1]


def test_a_karpathy_sentence_repeated_for_one_image_is_listed_as_skipped(tmp_path):
    make_karpathy(tmp_path)
    data = json.loads((tmp_path / "dataset_flickr8k.json").read_text())
    first = data["images"][0]
    first["sentences"].append(dict(first["sentences"][1]))
    (tmp_path / "dataset_flickr8k.json").write_text(json.dumps(data))
    manifest = prepare(tmp_path, tmp_path.parent / f"{tmp_path.name}-out")
    item = f"dataset_flickr8k.json images[0] sentences[{len(first['sentences']) - 1}]"
    reasons = {s["item"]: s["reason"] for s in manifest["skipped"]}
    assert reasons[item].startswith(f"duplicate caption (repeats another caption of {first['filename']})")


def test_a_jpeg_with_a_damaged_exif_block_is_kept_as_stored(tmp_path):
    make_official(tmp_path)
    image = tmp_path / "Flicker8k_Dataset" / "1000_a.jpg"
    with Image.open(image) as img:
        img.load()
        img.save(image, format="JPEG", quality=95, exif=b"Exif\x00\x00XX")  # an EXIF block that is no TIFF
    out = tmp_path.parent / f"{tmp_path.name}-out"
    manifest = prepare(tmp_path, out)
    assert "1000_a.jpg" not in {s["item"] for s in manifest["skipped"]}
    assert any(r.id == "1000_a.jpg" for r in open_prepared(out).records("train"))
