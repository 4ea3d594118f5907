"""COCO captions: the official `captions_{train,val}YYYY.json` layout and Karpathy's `dataset_coco.json`,
built here as tiny fixtures with bad entries of every kind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from latentdiff.config import PrepareDataConfig
from latentdiff.data.coco import val_or_test
from latentdiff.data.prepared import open_prepared
from latentdiff.errors import UserError
from latentdiff.stages import prepare_data

IMAGE_SIZE = 16


def _image(path: Path, shade: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (24, 20), (shade, 255 - shade, 40)).save(path, format="JPEG", quality=95)


def _captions(i: int, n: int = 5) -> list[str]:
    return [f"Image {i} caption {k} ." for k in range(n)]


def make_official(root: Path, year: str = "2017", parts=("train", "val"), with_quirks: bool = True) -> dict:
    """annotations/captions_{part}{year}.json + {part}{year}/; returns {file name: captions} expected."""
    expected = {}
    annotation_id = 0
    for p, part in enumerate(parts):
        images, annotations = [], []
        for i in range(4 if part == "train" else 6):
            image_id = 1000 * (p + 1) + i
            name = f"{image_id:012d}.jpg" if year == "2017" else f"COCO_{part}{year}_{image_id:012d}.jpg"
            _image(root / f"{part}{year}" / name, 20 * i + 60 * p)
            images.append({"id": image_id, "file_name": name, "width": 24, "height": 20})
            captions = _captions(image_id, n=7 if i == 0 else 5)  # COCO has images with 7 captions
            for caption in captions:
                annotation_id += 1
                annotations.append({"id": annotation_id, "image_id": image_id, "caption": caption + "\n"})
            expected[name] = captions[:5]
        if with_quirks and part == "val":
            images.append({"file_name": "no-id.jpg"})  # malformed image entry
            images.append({"id": 9999, "file_name": "000000009999.jpg"})  # its file is missing
            annotations.append({"id": 90001, "image_id": 9999, "caption": "A missing picture ."})
            annotations.append({"id": 90002, "image_id": 123456, "caption": "Names no image ."})  # unknown id
            annotations.append({"id": 90003, "image_id": images[1]["id"], "caption": "   "})  # empty caption
            duplicate_id = annotations[0]["id"]
            annotations.append({"id": duplicate_id, "image_id": images[1]["id"], "caption": "Again ."})
        folder = root / "annotations"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"captions_{part}{year}.json").write_text(
            json.dumps({"info": {}, "images": images, "annotations": annotations}))
    return expected


def prepare(root: Path, out: Path, seed: int = 0) -> dict:
    return prepare_data.run(PrepareDataConfig(source="coco", path=str(root), out=str(out), image_size=IMAGE_SIZE,
                                              seed=seed))


def records(out: Path) -> dict[str, tuple[str, list[str]]]:
    ds = open_prepared(out)
    return {r.id: (split, r.captions) for split in ("train", "validation", "test") for r in ds.records(split)}


def test_official_2017_train_and_val_files(tmp_path):
    expected = make_official(tmp_path / "coco")
    manifest = prepare(tmp_path / "coco", tmp_path / "out")
    assert manifest["layout"] == "official 2017"
    got = records(tmp_path / "out")
    assert {k: v[1] for k, v in got.items()} == expected  # 7 captions were capped to 5
    assert manifest["captions_over_limit_dropped"] == 4
    for name, (split, _) in got.items():
        # train file -> train; the val file halved into validation and test by image name
        assert split == ("train" if name.startswith("000000001") else val_or_test(name, 0))
    reasons = {s["item"]: s["reason"] for s in manifest["skipped"]}
    assert reasons == {
        "captions_val2017.json images[6]": reasons["captions_val2017.json images[6]"],
        "000000009999.jpg": reasons["000000009999.jpg"],
        "captions_val2017.json annotations[33]": reasons["captions_val2017.json annotations[33]"],
        "captions_val2017.json annotations[34]": reasons["captions_val2017.json annotations[34]"],
        "captions_val2017.json annotations[35]": reasons["captions_val2017.json annotations[35]"],
    }
    assert reasons["captions_val2017.json images[6]"].startswith("malformed entry")
    assert reasons["000000009999.jpg"].startswith("image file not found")
    assert reasons["captions_val2017.json annotations[33]"].startswith("unknown image id")
    assert reasons["captions_val2017.json annotations[34]"].startswith("empty caption")
    assert reasons["captions_val2017.json annotations[35]"].startswith("duplicate entry")


def test_val_halves_depend_only_on_the_image_and_the_seed():
    names = [f"{i:012d}.jpg" for i in range(2000)]
    first = [val_or_test(n, 0) for n in names]
    assert first == [val_or_test(n, 0) for n in names]
    assert 0.4 < first.count("test") / len(names) < 0.6
    assert first != [val_or_test(n, 1) for n in names]


def test_only_the_val_file_gets_the_usual_split_by_image(tmp_path):
    make_official(tmp_path / "coco", parts=("val",), with_quirks=False)
    manifest = prepare(tmp_path / "coco", tmp_path / "out")
    assert manifest["split_origin"] == "hash of the image name"
    assert sum(manifest["counts"].values()) == 6


def test_newest_year_wins_and_the_other_is_named(tmp_path):
    make_official(tmp_path / "coco", year="2014", with_quirks=False)
    make_official(tmp_path / "coco", year="2017", with_quirks=False)
    manifest = prepare(tmp_path / "coco", tmp_path / "out")
    assert manifest["layout"] == "official 2017"
    assert manifest["layout_files_ignored"] == ["annotations/captions_train2014.json",
                                                "annotations/captions_val2014.json"]
    assert all(not name.startswith("COCO_") for name in records(tmp_path / "out"))


def test_a_caption_file_without_its_image_folder_is_one_manifest_line(tmp_path):
    make_official(tmp_path / "coco", with_quirks=False)
    for path in (tmp_path / "coco" / "train2017").iterdir():
        path.unlink()
    (tmp_path / "coco" / "train2017").rmdir()
    manifest = prepare(tmp_path / "coco", tmp_path / "out")
    assert [s["item"] for s in manifest["skipped"]] == ["captions_train2017.json (all its images)"]
    assert manifest["skipped"][0]["reason"].startswith("image folder not found")
    assert sum(manifest["counts"].values()) == 6


def test_karpathy_layout_keeps_its_splits(tmp_path):
    root = tmp_path / "coco"
    make_official(root, year="2014", with_quirks=False)  # the images in train2014/ and val2014/
    entries = []
    for part in ("train", "val"):
        data = json.loads((root / "annotations" / f"captions_{part}2014.json").read_text())
        by_id = {img["id"]: img for img in data["images"]}
        sentences: dict[int, list[str]] = {}
        for a in data["annotations"]:
            sentences.setdefault(a["image_id"], []).append(a["caption"])
        for n, (image_id, caps) in enumerate(sentences.items()):
            split = "train" if part == "train" else ["restval", "val", "test"][n % 3]
            entries.append({"filepath": f"{part}2014", "filename": by_id[image_id]["file_name"], "split": split,
                            "cocoid": image_id, "sentences": [{"raw": c, "tokens": c.split()} for c in caps]})
    entries.append({"filepath": "val2014", "filename": "COCO_val2014_missing.jpg", "split": "val",
                    "sentences": [{"raw": "Not there ."}]})
    (root / "dataset_coco.json").write_text(json.dumps({"images": entries, "dataset": "coco"}))
    manifest = prepare(root, tmp_path / "out")
    assert manifest["layout"] == "karpathy"
    assert manifest["counts"] == {"train": 4 + 2, "validation": 2, "test": 2}
    assert [s["item"] for s in manifest["skipped"]] == ["COCO_val2014_missing.jpg"]
    got = records(tmp_path / "out")
    assert got["COCO_val2014_000000002000.jpg"] == ("train", _captions(2000))  # restval -> train
    assert got["COCO_val2014_000000002001.jpg"][0] == "validation"  # val -> validation


def test_a_folder_that_is_not_coco_is_one_sentence(tmp_path):
    (tmp_path / "photos").mkdir()
    _image(tmp_path / "photos" / "a.jpg", 10)
    with pytest.raises(UserError, match="captions_train2017.json"):
        prepare(tmp_path / "photos", tmp_path / "out")


def test_caption_files_without_any_image_folder_say_which_folders(tmp_path):
    make_official(tmp_path / "coco", with_quirks=False)
    (tmp_path / "coco" / "val2017").rename(tmp_path / "coco" / "pictures")
    (tmp_path / "coco" / "train2017").rename(tmp_path / "coco" / "more")
    with pytest.raises(UserError, match="val2017/"):
        prepare(tmp_path / "coco", tmp_path / "out")


def test_path_may_be_the_annotations_folder(tmp_path):
    expected = make_official(tmp_path / "coco", with_quirks=False)
    prepare(tmp_path / "coco" / "annotations", tmp_path / "out")
    assert {k: v[1] for k, v in records(tmp_path / "out").items()} == expected


def test_ids_that_are_neither_numbers_nor_strings_and_repeated_captions_are_listed_as_skipped(tmp_path):
    make_official(tmp_path / "coco", with_quirks=False)
    val = tmp_path / "coco" / "annotations" / "captions_val2017.json"
    data = json.loads(val.read_text())
    first = data["images"][0]
    data["images"].append({"id": [5], "file_name": "list-id.jpg"})  # unhashable: used to be a traceback
    data["annotations"] += [{"id": 80001, "image_id": [5], "caption": "A list for an id ."},
                            {"id": {"a": 1}, "image_id": first["id"], "caption": "A dict for an id ."},
                            {"id": 80002, "image_id": first["id"], "caption": data["annotations"][0]["caption"]}]
    val.write_text(json.dumps(data))
    manifest = prepare(tmp_path / "coco", tmp_path / "out")
    reasons = {s["item"]: s["reason"] for s in manifest["skipped"]}
    last = len(data["annotations"]) - 1
    assert reasons[f"captions_val2017.json images[{len(data['images']) - 1}]"].startswith("malformed entry")
    assert reasons[f"captions_val2017.json annotations[{last - 2}]"].startswith("malformed entry")
    assert reasons[f"captions_val2017.json annotations[{last - 1}]"].startswith("malformed entry")
    assert reasons[f"captions_val2017.json annotations[{last}]"] == \
        f"duplicate caption (repeats another caption of {first['file_name']})"
    assert len(records(tmp_path / "out")[first["file_name"]][1]) == 5
