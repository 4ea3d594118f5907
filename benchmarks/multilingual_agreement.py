"""Do prompts in other languages give the same picture as English?

    python benchmarks/multilingual_agreement.py --data EMOJI_DATA [--model DIR] [--num-concepts 60]

For the first N test images of a prepared emoji dataset (made with `--languages` covering the languages
below), each image's emoji name in English, French, Spanish, German, Chinese and Japanese (the `emoji`
package's names, as prepare-data wrote them) is generated with the same seed per concept, through
`latentdiff.pipeline.TextToImage` (what `latentdiff generate` runs). Each generated image ranks the real
test images by EfficientNet-Lite0 feature distance, exactly as `latentdiff evaluate`'s prompt fidelity does,
and scores a hit when a real image carrying the concept's ENGLISH name is in its top k: so a language
scores as high as English only if its prompt leads to the English prompt's picture. Chance levels are
those of prompt fidelity. Prints a table and writes benchmarks/results/multilingual_agreement.json.

Beside that exact score, `top1_group`/`top5_group` count a hit on any real image of the concept's GROUP:
its English name without skin-tone modifiers, so "woman running: dark skin tone" matches every "woman
running". The emoji training split holds 1,686 skin-tone variants; its 3,382 names form 1,740 groups, up
to 25 alike, and a good drawing's nearest images are its own siblings in any order.
"""

from __future__ import annotations

import argparse
import collections
import os
import platform
import re
import time
from pathlib import Path

from latentdiff.data.prepared import evenly_spaced
from results_file import write_results

RESULTS = Path(__file__).resolve().parent / "results" / "multilingual_agreement.json"
LANGUAGES = ("en", "fr", "es", "de", "zh", "ja")
# The emoji package's skin-tone modifiers as they appear in its English names ("handshake: light skin tone,
# dark skin tone", or without punctuation once prepare-data cleaned the name)
SKIN_TONE = re.compile(r"\b(?:medium-light|medium-dark|light|medium|dark) skin tone\b")


def concept_group(english_name: str) -> str:
    """The emoji's name without its skin-tone modifiers: the skin-tone variants of one emoji form one group."""
    return re.sub(r"[:,\s]+", " ", SKIN_TONE.sub(" ", english_name)).strip()  # and the punctuation around them


def group_sizes(english_names: list[str]) -> collections.Counter:
    """How many of the names fall in each concept group (1: an emoji without skin-tone siblings)."""
    return collections.Counter(concept_group(name) for name in english_names)


def without_siblings(english_names: list[str]) -> list[bool]:
    """For each name, whether it is alone in its concept group (an emoji without skin-tone siblings)."""
    size_of = group_sizes(english_names)
    return [size_of[concept_group(name)] == 1 for name in english_names]


def concepts(records, languages: tuple[str, ...], limit: int, spread: bool = False) -> list[tuple[object, dict[str, str]]]:
    """(record, {language: caption}) of `limit` records that carry every language: the first ones, or with
    `spread` ones evenly spaced over the whole split (the emoji split is sorted by name, so its first 50 are
    mostly flags; an even spread samples every kind of emoji, without randomness)."""
    eligible = []
    for record in records:
        names = {}
        for language, caption in zip(record.languages, record.captions):
            names.setdefault(language, caption)  # the first caption of each language
        if all(language in names for language in languages):
            eligible.append((record, names))
        if len(eligible) == limit and not spread:
            break
    return evenly_spaced(eligible, limit) if spread else eligible[:limit]


def score_languages(pipeline, features, chosen, languages: tuple[str, ...], real_features, records, image_size: int,
                    *, seed: int, steps: int, guidance: float, batch_size: int) -> tuple[dict, dict]:
    """Generate every chosen concept in every language (concept i with seed + i) and score each language's
    images against the ENGLISH name: did this language's prompt find the English prompt's picture?
    `real_features` (N_real, D) are the features of `records`, every image of the split being a candidate.
    Also scores each image against the concept's group (`concept_group`): "top1_group", "top5_group".
    Returns ({language: {"top1", "top5", "top1_group", "top5_group", "examples"}},
    {"chance_top1", "chance_top5", "chance_top1_group", "chance_top5_group"})."""
    from latentdiff.evaluation.prompt_fidelity import prompt_fidelity
    from latentdiff.evaluation.samples import generate_for_captions, to_tensor
    from latentdiff.generation_defaults import DEFAULT_SCHEDULER

    english = [names["en"] for _, names in chosen]
    real_captions = [record.captions for record in records]
    groups = [concept_group(name) for name in english]
    real_groups = [[concept_group(caption) for caption in captions] for captions in real_captions]
    rows, chance = {}, {}
    for language in languages:
        prompts = [names[language] for _, names in chosen]
        images = generate_for_captions(pipeline, prompts, seed=seed, steps=steps, guidance=guidance,
                                       scheduler=DEFAULT_SCHEDULER, batch_size=batch_size, desc=language)
        generated = features(to_tensor([image.image for image in images], image_size))
        scores = prompt_fidelity(generated, real_features, english, real_captions)
        grouped = prompt_fidelity(generated, real_features, groups, real_groups)
        rows[language] = {"top1": scores["top1"], "top5": scores["top5"], "top1_group": grouped["top1"],
                          "top5_group": grouped["top5"], "examples": prompts[:3]}
        chance = {"chance_top1": scores["chance_top1"], "chance_top5": scores["chance_top5"],
                  "chance_top1_group": grouped["chance_top1"], "chance_top5_group": grouped["chance_top5"]}
    return rows, chance


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="a prepared emoji dataset with captions in the languages below")
    parser.add_argument("--model", default=None, help="a pipeline folder (default: the bundled model)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--num-concepts", type=int, default=60, help="test images (concepts) asked in every language")
    parser.add_argument("--languages", default=",".join(LANGUAGES), help="comma-separated; English must come first")
    parser.add_argument("--steps", type=int, default=None, help="denoising steps (default: latentdiff's)")
    parser.add_argument("--guidance", type=float, default=None, help="guidance scale (default: the model's own, as `latentdiff generate` uses)")
    parser.add_argument("--seed", type=int, default=0, help="concept i uses seed + i in every language")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()

    from latentdiff.generation_defaults import DEFAULT_GENERATION_STEPS, DEFAULT_SCHEDULER
    from latentdiff.data.prepared import open_prepared
    from latentdiff.evaluation.features import FEATURE_EXTRACTOR_NAME, Lite0Features
    from latentdiff.evaluation.samples import load_real, to_tensor
    from latentdiff.pipeline import TextToImage

    languages = tuple(code.strip() for code in args.languages.split(",") if code.strip())
    if languages[0] != "en":
        raise SystemExit("--languages must start with en: every language is scored against the English name's image")
    steps = args.steps or DEFAULT_GENERATION_STEPS
    dataset = open_prepared(args.data)
    records = dataset.require_split(args.split)
    chosen = concepts(records, languages, args.num_concepts)
    if not chosen:
        raise SystemExit(f"no {args.split} image of {args.data} has captions in all of {', '.join(languages)}; "
                         f"prepare it with `latentdiff prepare-data emoji --languages all`")

    started = time.perf_counter()
    pipeline = TextToImage.load(args.model, "cpu", "torch")  # the protocol of the recorded numbers
    guidance = pipeline.default_guidance if args.guidance is None else args.guidance  # latentdiff_model.json's, or 7.5
    features = Lite0Features()
    real_features = features(to_tensor(load_real(records).images, dataset.image_size))
    rows, chance = score_languages(pipeline, features, chosen, languages, real_features, records, dataset.image_size,
                                   seed=args.seed, steps=steps, guidance=guidance, batch_size=args.batch_size)
    for language, row in rows.items():
        print(f"{language}: top-1 {row['top1']:.3f}  top-5 {row['top5']:.3f}  group top-5 {row['top5_group']:.3f}  (e.g. {', '.join(row['examples'])})",
              flush=True)

    print(f"chance: top-1 {chance['chance_top1']:.3f}  top-5 {chance['chance_top5']:.3f}; "
          f"{len(chosen)} concepts, ranked among the {len(records)} real {args.split} images")
    payload = {
        "benchmark": "multilingual_agreement", "model": str(pipeline.source.path),
        "data": str(Path(args.data).resolve()), "split": args.split, "num_concepts": len(chosen),
        "num_real_images": len(records), "languages": rows, **chance, "steps": steps, "guidance": guidance,
        "scheduler": DEFAULT_SCHEDULER, "seed": args.seed, "features": FEATURE_EXTRACTOR_NAME,
        "seconds": round(time.perf_counter() - started, 1), "machine": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(), "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    write_results(payload, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
