"""A prepared emoji dataset cut to fewer training images: the memorisation test of docs/speedrun/emoji-unet-passes.md.

    python benchmarks/emoji_subset.py --data runs/speedrun/emoji --num-images 200 --out runs/speedrun/emoji-s200 \
        [--english-only | --languages en,fr,es,de,zh,ja]

The training split keeps `--num-images` emoji spread evenly over it, chosen as `speedrun.py --measure` chooses its
`train_spread` concepts, so the 50 that the measurement asks for are inside every subset of 50, 100, 200, ...
(the even spread of 50 is a sub-spread of those). Validation and test are copied whole. `--english-only` keeps
only each training image's English caption: the issue's "English-only captions vs all 14 languages on the same
images" ablation; `--languages` keeps the captions of the languages listed (e.g. the six the measurement asks
in). A U-Net trained on the subset is then measured on the FULL data (`speedrun.py --measure
PIPELINE --data runs/speedrun/emoji`): each concept is still ranked among all 3,382 training images.

    python benchmarks/emoji_subset.py --data runs/speedrun/emoji --repeat-singletons 6 --out runs/speedrun/emoji-single6

keeps every training emoji and lists each one without skin-tone siblings (its concept group, the English name
without skin-tone modifiers, has one member) that many times: kohya's folder "repeats", so those emoji are drawn
that many times as often per pass (docs/speedrun/conditions.md, "Which training emoji are missed").

    python benchmarks/emoji_subset.py --data runs/speedrun/emoji --crowded 5 --clips CLIP_A CLIP_B --out runs/speedrun/emoji-crowded

keeps the measured training emoji without skin-tone siblings (those of the 150 that `emoji_misses.py` scores) and,
for each, the 5 training emoji whose conditions are nearest to its own by each CLIP folder's text encoder (the
output at the last position, which the aligned encoder makes the whole condition; docs/speedrun/conditions.md, "How far apart
the conditions are"): a small split in which each of those emoji keeps the neighbours it is confused with, so
U-Nets on two text encoders can be compared from nothing at many passes.

    python benchmarks/emoji_subset.py --data runs/speedrun/emoji --grid OUT.png --models A B ... [--guidance 3]

draws the first 12 of those 50 concepts from their English names (`--grid-language fr`: their French ones, ...)
with each pipeline (one row each, the seeds and steps of `speedrun.py --measure`) under a row of the real images:
what a person sees beside the numbers.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from multilingual_agreement import LANGUAGES, concepts, without_siblings
from speedrun import MEASURE_CONCEPTS, MEASURE_STEPS, SEED


def language_set(text: str) -> set[str]:
    """`--languages en,fr` -> {'en', 'fr'}, each one a language of the emoji source."""
    from latentdiff.data.sources.emoji import ALL_LANGUAGES

    codes = set(text.split(","))
    unknown = sorted(codes - set(ALL_LANGUAGES))
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown emoji language(s) {', '.join(unknown)}; choose from "
                                         f"{', '.join(ALL_LANGUAGES)}, comma-separated")
    return codes


def write_subset(data: Path, out: Path, num_images: int, languages: set[str] | None = None) -> int:
    """Copy `num_images` spread training emoji (with only the captions in `languages`, when given) and the whole
    validation and test splits to `out`; returns the number of training images."""
    from latentdiff.data.prepared import open_prepared

    records = open_prepared(str(data)).require_split("train")
    chosen = {record.path.name for record, _ in concepts(records, LANGUAGES, num_images, spread=True)}
    return write_chosen(data, out, chosen, languages)


def crowded_names(data: Path, clips: list[str], neighbours: int, num_concepts: int = 150) -> set[str]:
    """File names of the measured emoji without skin-tone siblings (of `num_concepts` spread ones) and of the
    `neighbours` training emoji nearest to each by each CLIP's condition (English names, the text encoder's output
    at the last of the pipeline's positions)."""
    import torch

    from condition_spread import conditions_of
    from latentdiff.data.prepared import open_prepared

    records = open_prepared(str(data)).require_split("train")
    english = [record.captions[record.languages.index("en")] for record in records]
    index_of = {id(record): i for i, record in enumerate(records)}
    lone = without_siblings(english)
    alone = [i for i in (index_of[id(record)] for record, _ in concepts(records, LANGUAGES, num_concepts, spread=True))
             if lone[i]]
    chosen = set(alone)
    for clip in clips:
        condition = conditions_of(clip, english)  # (N, D)
        distances = torch.cdist(condition[alone], condition)  # (len(alone), N)
        distances[torch.arange(len(alone)), torch.tensor(alone)] = float("inf")
        chosen.update(int(i) for i in distances.topk(neighbours, largest=False).indices.flatten())
    return {records[i].path.name for i in chosen}


def write_chosen(data: Path, out: Path, chosen: set[str], languages: set[str] | None = None) -> int:
    """Copy the training images named in `chosen` (with only the captions in `languages`, when given) and the
    whole validation and test splits to `out`; returns the number of training images."""
    if out.exists():
        shutil.rmtree(out)
    (out / "train").mkdir(parents=True)
    for name in ("manifest.json", "latentdiff_config.json"):
        shutil.copy(data / name, out / name)
    for split in ("validation", "test"):
        shutil.copytree(data / split, out / split)
    kept = []
    for line in (data / "train" / "metadata.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if row["file_name"] not in chosen:
            continue
        if languages:
            kept_captions = [i for i, language in enumerate(row["language"]) if language in languages]
            row["language"] = [row["language"][i] for i in kept_captions]
            row["text"] = [row["text"][i] for i in kept_captions]
        shutil.copy(data / "train" / row["file_name"], out / "train" / row["file_name"])
        kept.append(json.dumps(row, ensure_ascii=False))
    (out / "train" / "metadata.jsonl").write_text("\n".join(kept) + "\n", encoding="utf-8")
    return len(kept)


def write_repeated(data: Path, out: Path, repeats: int) -> int:
    """Copy the dataset to `out` with each training emoji whose concept group has one member listed `repeats`
    times in the training metadata (the image file once); returns the number of training rows."""
    rows = [json.loads(line) for line in (data / "train" / "metadata.jsonl").read_text(encoding="utf-8").splitlines()]
    english = [row["text"][row["language"].index("en")] for row in rows]
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(data, out, ignore=shutil.ignore_patterns(".latentdiff-cache", "metadata.jsonl"))
    kept = []
    for row, alone in zip(rows, without_siblings(english)):
        kept += [json.dumps(row, ensure_ascii=False)] * (repeats if alone else 1)
    (out / "train" / "metadata.jsonl").write_text("\n".join(kept) + "\n", encoding="utf-8")
    return len(kept)


def write_grid(data: Path, out: Path, models: list[str], guidance: float | None, language: str = "en",
               num_concepts: int = 12) -> None:
    from PIL import Image

    from latentdiff.data.prepared import open_prepared
    from latentdiff.evaluation.samples import generate_for_captions
    from latentdiff.generation_defaults import DEFAULT_SCHEDULER
    from latentdiff.model_source import guidance_for
    from latentdiff.pipeline import TextToImage

    chosen = concepts(open_prepared(str(data)).require_split("train"), LANGUAGES, MEASURE_CONCEPTS,
                      spread=True)[:num_concepts]
    rows = [[Image.open(record.path).convert("RGB") for record, _ in chosen]]
    for model in models:
        pipeline = TextToImage.load(model, "cpu", "torch")
        generated = generate_for_captions(pipeline, [names[language] for _, names in chosen], seed=SEED,
                                          steps=MEASURE_STEPS,
                                          guidance=guidance_for(model) if guidance is None else guidance,
                                          scheduler=DEFAULT_SCHEDULER, batch_size=num_concepts, desc=Path(model).name)
        rows.append([image.image for image in generated])  # the very images `speedrun.py --measure` scores
    side = rows[0][0].width
    grid = Image.new("RGB", (side * len(chosen), side * len(rows)), "white")
    for y, row in enumerate(rows):
        for x, image in enumerate(row):
            grid.paste(image.resize((side, side)), (x * side, y * side))
    out.parent.mkdir(parents=True, exist_ok=True)
    grid.save(out)
    print(f"wrote {out}: the real images, then one row per model: {', '.join(models)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="a prepared emoji dataset (prepare-data emoji --languages all)")
    parser.add_argument("--out", help="the subset's folder (replaced if it exists)")
    parser.add_argument("--num-images", type=int, default=200, help="training images kept, spread over the split")
    parser.add_argument("--english-only", action="store_true", help="keep only the English caption of each image")
    parser.add_argument("--languages", type=language_set,
                        help="keep only the captions in these comma-separated languages (e.g. en,fr)")
    parser.add_argument("--repeat-singletons", type=int, default=0, metavar="N",
                        help="instead of a subset: every training emoji, those without skin-tone siblings listed N times")
    parser.add_argument("--crowded", type=int, default=0, metavar="K",
                        help="instead of a spread subset: the measured emoji without skin-tone siblings, each with its K "
                             "nearest training emoji by the condition of each of --clips")
    parser.add_argument("--clips", nargs="+", default=[], help="CLIP folders whose conditions --crowded uses")
    parser.add_argument("--grid", help="instead: write this PNG of --models' drawings of the measured concepts")
    parser.add_argument("--models", nargs="+", default=[], help="pipeline folders, one grid row each")
    parser.add_argument("--guidance", type=float, default=None,
                        help="guidance scale of the grid (default: each model's own, as `speedrun.py --measure`)")
    parser.add_argument("--grid-language", default="en", choices=LANGUAGES,
                        help="the language of the names the grid asks for (default: en)")
    args = parser.parse_args()
    if args.grid:
        write_grid(Path(args.data), Path(args.grid), args.models, args.guidance, args.grid_language)
        return 0
    if not args.out:
        parser.error("pass --out (the subset to write) or --grid (a picture of --models)")
    if args.english_only and args.languages:
        parser.error("pass --english-only or --languages, not both (--english-only is --languages en)")
    if args.repeat_singletons:
        if args.repeat_singletons < 2:
            parser.error(f"--repeat-singletons {args.repeat_singletons}: give 2 or more (1 is the dataset as it is)")
        count = write_repeated(Path(args.data), Path(args.out), args.repeat_singletons)
        print(f"wrote {args.out}: {count} training rows")
        return 0
    languages = {"en"} if args.english_only else args.languages
    if args.crowded:
        if not args.clips:
            parser.error("--crowded needs --clips: the CLIP folders whose conditions tell which emoji are near")
        count = write_chosen(Path(args.data), Path(args.out), crowded_names(Path(args.data), args.clips, args.crowded),
                             languages)
    else:
        count = write_subset(Path(args.data), Path(args.out), args.num_images, languages)
    print(f"wrote {args.out}: {count} training images")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
