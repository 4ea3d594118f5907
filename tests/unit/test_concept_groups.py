"""The emoji benchmarks' group score: skin-tone variants of one emoji count as one concept."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import torch

from latentdiff.evaluation.prompt_fidelity import prompt_fidelity

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture
def group(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # the benchmarks import each other as scripts do
    return importlib.import_module("multilingual_agreement").concept_group


def test_skin_tone_variants_share_a_group_and_other_emoji_do_not(group):
    # the emoji package's names, and the same names as prepare-data stores them (punctuation dropped)
    assert group("handshake: light skin tone, dark skin tone") == group("handshake") == "handshake"
    assert group("man: medium-dark skin tone, beard") == group("man beard") == group("man dark skin tone beard")
    assert group("woman running facing right medium-light skin tone") == "woman running facing right"
    assert group("red apple") == "red apple" != group("green apple")
    assert group("flag: Colombia") != group("flag: Namibia")
    assert group("dark sunglasses") == "dark sunglasses"  # "dark" alone is not a skin tone


def test_a_sibling_is_a_group_hit_but_not_an_exact_hit(group):
    names = ["waving hand", "waving hand dark skin tone", "red apple"]
    real = torch.eye(3)  # (N_real, D): three distinct images
    generated = real[[0]]  # drawn for "waving hand dark skin tone", landing on the yellow waving hand
    exact = prompt_fidelity(generated, real, ["waving hand dark skin tone"], [[n] for n in names], top_k=(1,))
    grouped = prompt_fidelity(generated, real, [group("waving hand dark skin tone")], [[group(n)] for n in names],
                              top_k=(1,))
    assert exact["top1"] == 0.0 and grouped["top1"] == 1.0
    assert grouped["chance_top1"] > exact["chance_top1"]  # two of the three images are in the group


def test_spread_concepts_cover_the_whole_split_and_the_first_ones_do_not(monkeypatch):
    from types import SimpleNamespace

    monkeypatch.syspath_prepend(str(BENCHMARKS))
    concepts = importlib.import_module("multilingual_agreement").concepts
    # 103 records sorted by name as a prepared split is; every one captioned in en and fr
    records = [SimpleNamespace(name=f"e{i:03d}", languages=["en", "fr"], captions=[f"en {i}", f"fr {i}"])
               for i in range(103)]
    spread = [record.name for record, _ in concepts(records, ("en", "fr"), 10, spread=True)]
    assert len(set(spread)) == 10 and spread[0] == "e000" and spread[-1] >= "e090"  # up to the end of the split
    first = [record.name for record, _ in concepts(records, ("en", "fr"), 10)]
    assert first == [f"e{i:03d}" for i in range(10)]
    assert len(concepts(records, ("en", "fr"), 500, spread=True)) == 103  # asked for more than there are: all
    assert concepts(records, ("en", "de"), 10, spread=True) == []  # no German caption: not eligible


def test_repeating_singletons_lists_only_emoji_without_skin_tone_siblings_again(monkeypatch, tmp_path):
    import json

    monkeypatch.syspath_prepend(str(BENCHMARKS))
    write_repeated = importlib.import_module("emoji_subset").write_repeated
    data = tmp_path / "emoji"
    for split in ("train", "test"):
        (data / split).mkdir(parents=True)
    (data / "manifest.json").write_text("{}")
    (data / ".latentdiff-cache").mkdir()
    names = ["waving hand", "waving hand dark skin tone", "red apple"]
    rows = [{"file_name": f"{i}.png", "language": ["fr", "en"], "text": [f"fr {name}", name]} for i, name in enumerate(names)]
    (data / "train" / "metadata.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    for row in rows:
        (data / "train" / row["file_name"]).write_bytes(b"png")
    out = tmp_path / "repeated"
    assert write_repeated(data, out, 3) == 5
    listed = [json.loads(line)["file_name"] for line in (out / "train" / "metadata.jsonl").read_text().splitlines()]
    assert listed == ["0.png", "1.png", "2.png", "2.png", "2.png"]  # the apple has no siblings; the hands do
    assert sorted(p.name for p in (out / "train").glob("*.png")) == ["0.png", "1.png", "2.png"]  # each image once
    assert not (out / ".latentdiff-cache").exists()  # the caches are of the source's metadata


def test_the_misses_are_split_by_group_size(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    by_group_size = importlib.import_module("emoji_misses").by_group_size
    hits = torch.tensor([False, True, True, True, False, True])
    assert by_group_size([1, 5, 5, 6, 1, 25], hits) == {"1": {"num_concepts": 2, "top5": 0.0},
                                                        "2-5": {"num_concepts": 2, "top5": 1.0},
                                                        "6+": {"num_concepts": 2, "top5": 1.0}}


def test_clip_hits_ask_whether_the_own_image_is_among_the_five_nearest(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    clip_hits = importlib.import_module("emoji_misses").clip_hits
    import latentdiff.models.clip as clip_module
    import latentdiff.models.clip_embeddings as embeddings

    real = torch.eye(8)  # (N_real, D): eight distinct images, image j along axis j
    texts = torch.stack([real[0], 0.9 * real[1] + 0.1 * real[7], real[2:8].sum(dim=0)])  # names 0, 1, 2
    monkeypatch.setattr(clip_module, "load_clip", lambda folder: (torch.nn.Identity(), None, None))
    monkeypatch.setattr(embeddings, "encode_images", lambda model, processor, images: real)
    monkeypatch.setattr(embeddings, "encode_texts", lambda model, tokenizer, names: texts)
    # name 0 finds image 0 first; name 1 image 1 first; name 2 is as near to images 2-7 as to each other, and
    # its own image (0) is the farthest
    assert clip_hits("CLIP", ["a", "b", "c"], [None] * 8, torch.tensor([0, 1, 0])).tolist() == [True, True, False]


def test_a_crowded_subset_keeps_the_emoji_without_siblings_and_their_nearest_by_each_encoder(monkeypatch):
    from pathlib import PurePath
    from types import SimpleNamespace

    import latentdiff.data.prepared as prepared

    monkeypatch.syspath_prepend(str(BENCHMARKS))
    subset = importlib.import_module("emoji_subset")
    spread = importlib.import_module("condition_spread")
    languages = importlib.import_module("multilingual_agreement").LANGUAGES
    names = ["eagle", "falafel", "tram", "waving hand", "waving hand dark skin tone", "bicycle"]
    records = [SimpleNamespace(path=PurePath(f"{i}.png"), languages=list(languages), captions=[name] * len(languages))
               for i, name in enumerate(names)]
    monkeypatch.setattr(prepared, "open_prepared", lambda root: SimpleNamespace(require_split=lambda split: records))
    # encoder A puts falafel next to eagle and tram, the dark-skinned hand next to the bicycle; encoder B puts tram next to
    # bicycle and falafel next to eagle
    by_encoder = {"A": torch.tensor([[0.0], [0.1], [3.0], [9.0], [20.1], [20.0]]),
                  "B": torch.tensor([[0.0], [0.2], [10.1], [30.0], [50.0], [10.0]])}
    monkeypatch.setattr(spread, "conditions_of", lambda clip, english: by_encoder[clip])
    # the waving hands have siblings, so only eagle, falafel, tram and bicycle are asked about, each with its nearest
    assert subset.crowded_names(Path("data"), ["A"], 1) == {"0.png", "1.png", "2.png", "5.png", "4.png"}
    assert subset.crowded_names(Path("data"), ["A", "B"], 1) == {"0.png", "1.png", "2.png", "4.png", "5.png"}
    assert subset.crowded_names(Path("data"), ["B"], 1) == {"0.png", "1.png", "2.png", "5.png"}
