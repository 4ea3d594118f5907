"""What the training emoji a model misses have in common: each spread training emoji is drawn from its English
name (the speedrun's protocol: seed 0 + i, 20 DPM++ 2M steps) and ranked among all training images, then the
hits and misses are split by properties of the emoji itself:

- the size of its concept group (1: an emoji without skin-tone siblings; 5-6: a person or gesture in its skin
  tones);
- how alike its nearest OTHER real image looks (EfficientNet-Lite0 distance, the ranking's own space): an emoji
  with a near-twin (a flag among 258, a skin tone among five) must be drawn more exactly to rank in the top 5;
- how alike its name's condition is to the nearest other training emoji's (cosine of the text encoder's whole
  output sequence, every token the U-Net attends to): a name the condition barely tells apart from another's;
- the name's length in tokens.

With `--clip CLIP` it also ranks the same emoji by that CLIP's own text->image retrieval (the English name against
every training image's CLIP embedding): whether the contrastive model behind the U-Net's condition tells them
apart at all. `--grid` saves, for the first misses, the real emoji, the drawing, and the real image the drawing
landed nearest.

    python benchmarks/emoji_misses.py --model src/latentdiff/default_model --data runs/speedrun/emoji \
        --num-concepts 150 --guidance 2 --out benchmarks/results/emoji-misses-bundled.json --grid misses.png \
        [--clip src/latentdiff/default_model/clip]
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch
from PIL import Image

from multilingual_agreement import LANGUAGES, concept_group, concepts, group_sizes
from results_file import write_results
from speedrun import MEASURE_STEPS, SEED, real_features

TOP_K = 5


def thirds(values: torch.Tensor, hits: torch.Tensor) -> list[dict]:
    """Hit rate in each third of `values` (N,), lowest values first."""
    order = torch.argsort(values)
    rows = []
    for part in torch.tensor_split(order, 3):
        rows.append({"from": float(values[part].min()), "to": float(values[part].max()),
                     "num_concepts": len(part), "top5": float(hits[part].float().mean())})
    return rows


def by_group_size(sizes: list[int], hits: torch.Tensor) -> dict:
    """Hit rate of the emoji without skin-tone siblings ("1"), of small groups ("2-5") and of large ones ("6+")."""
    rows = {}
    for label, low, high in (("1", 1, 1), ("2-5", 2, 5), ("6+", 6, math.inf)):
        members = [i for i, size in enumerate(sizes) if low <= size <= high]
        if members:
            rows[label] = {"num_concepts": len(members), "top5": float(hits[members].float().mean())}
    return rows


def clip_hits(clip_dir: str, names: list[str], real_images, own: torch.Tensor) -> torch.Tensor:
    """(N,) bool: is name i's own image (index own[i] of real_images) among the 5 nearest by the CLIP's own
    text->image similarity?"""
    from latentdiff.models.clip import load_clip
    from latentdiff.models.clip_embeddings import encode_images, encode_texts

    model, tokenizer, processor = load_clip(clip_dir)
    model.eval()
    similarity = encode_texts(model, tokenizer, names) @ encode_images(model, processor, real_images).T  # (N, N_real)
    order = similarity.argsort(dim=1, descending=True, stable=True)
    return (order[:, :TOP_K] == own[:, None]).any(dim=1)


def text_similarity_to_nearest_other(pipeline, names: list[str], all_names: list[str]) -> torch.Tensor:
    """(N,) cosine of each name's text-encoder sequence (flattened) to the nearest different training name's."""
    def embed(texts: list[str]) -> torch.Tensor:
        chunks = [pipeline.encode_prompts(texts[i:i + 256]).flatten(1) for i in range(0, len(texts), 256)]
        return torch.nn.functional.normalize(torch.cat(chunks).float(), dim=1)  # (N, D)

    with torch.inference_mode():
        mine, everyone = embed(names), embed(all_names)
    similarity = mine @ everyone.T  # (N, N_all)
    same = torch.tensor([[name == other for other in all_names] for name in names])
    return similarity.masked_fill(same, -2).max(dim=1).values


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True, help="the prepared emoji dataset")
    parser.add_argument("--num-concepts", type=int, default=150)
    parser.add_argument("--guidance", type=float, default=2.0)
    parser.add_argument("--steps", type=int, default=MEASURE_STEPS)
    parser.add_argument("--out", required=True, help="results file (json)")
    parser.add_argument("--clip", default=None, help="also score this CLIP folder's text->image retrieval of the same emoji")
    parser.add_argument("--grid", default=None, help="PNG of the first misses: real, drawn, nearest real")
    args = parser.parse_args(argv)

    from latentdiff.data.prepared import open_prepared
    from latentdiff.evaluation.features import Lite0Features
    from latentdiff.evaluation.prompt_fidelity import nearest_real_ranks
    from latentdiff.evaluation.samples import generate_for_captions, load_real, to_tensor
    from latentdiff.generation_defaults import DEFAULT_SCHEDULER
    from latentdiff.pipeline import TextToImage

    dataset = open_prepared(args.data)
    records = dataset.require_split("train")
    chosen = concepts(records, LANGUAGES, args.num_concepts, spread=True)  # the speedrun's own 150
    names = [languages["en"] for _, languages in chosen]
    pipeline = TextToImage.load(args.model, "cpu", "torch")
    features = Lite0Features()
    real = real_features(features, dataset, "train", records)  # (N_real, D)
    index_of = {id(record): i for i, record in enumerate(records)}
    own = torch.tensor([index_of[id(record)] for record, _ in chosen])  # (N,) each concept's own real image

    drawn = generate_for_captions(pipeline, names, seed=SEED, steps=args.steps, guidance=args.guidance,
                                  scheduler=DEFAULT_SCHEDULER, batch_size=25, desc="en")
    order = nearest_real_ranks(features(to_tensor([image.image for image in drawn], dataset.image_size)), real)
    own_rank = (order == own[:, None]).int().argmax(dim=1)  # (N,) 0 = nearest
    hits = own_rank < TOP_K

    real_distances = torch.cdist(real[own].double(), real.double())  # (N, N_real)
    real_distances[torch.arange(len(own)), own] = float("inf")
    twin_distance = real_distances.min(dim=1).values  # (N,) to the nearest other real image
    all_names = [record.captions[record.languages.index("en")] for record in records]
    text_twin = text_similarity_to_nearest_other(pipeline, names, all_names)

    tokenizer = pipeline.pipe.tokenizer
    num_tokens = torch.tensor([len(tokenizer(name, truncation=True).input_ids) for name in names])  # with BOS, EOS
    size_of = group_sizes(all_names)
    sizes = [size_of[concept_group(name)] for name in names]
    nearest = order[:, 0]
    misses = [i for i in range(len(chosen)) if not hits[i]]
    same_group = sum(concept_group(all_names[int(nearest[i])]) == concept_group(names[i]) for i in misses)
    result = {
        "model": str(Path(args.model).resolve()), "guidance": args.guidance, "steps": args.steps,
        "num_concepts": len(chosen), "top5": float(hits.float().mean()),
        "misses": len(misses), "misses_nearest_in_own_group": int(same_group),
        "misses_own_rank_median": float(own_rank[~hits].float().median()) if misses else None,
        "by_nearest_other_real_image_distance": thirds(twin_distance, hits),
        "by_text_similarity_to_nearest_other_name": thirds(text_twin, hits),
        "by_name_tokens": thirds(num_tokens.float(), hits),
        "by_group_size": by_group_size(sizes, hits),
        "concepts": [{"name": names[i], "own_rank": int(own_rank[i]), "drawn_nearest": all_names[int(nearest[i])],
                      "tokens": int(num_tokens[i]), "group_size": sizes[i],
                      "text_similarity_to_nearest_other_name": float(text_twin[i]),
                      "nearest_other_real_image_distance": float(twin_distance[i])} for i in range(len(chosen))],
    }
    if args.clip:
        retrieved = clip_hits(args.clip, names, load_real(records).images, own)
        result["clip"] = {"folder": str(Path(args.clip).resolve()), "top5": float(retrieved.float().mean()),
                          "by_group_size": by_group_size(sizes, retrieved)}
    write_results(result, args.out)
    print(f"top-5 {result['top5']:.3f}; {len(misses)} misses, {same_group} of them nearest an image of their own "
          f"group, median rank of the own image {result['misses_own_rank_median']}")
    for key in ("by_nearest_other_real_image_distance", "by_text_similarity_to_nearest_other_name", "by_name_tokens"):
        print(key, " | ".join(f"{row['from']:.3g}-{row['to']:.3g}: {row['top5']:.2f}" for row in result[key]))
    print("by_group_size", " | ".join(f"{label} ({row['num_concepts']}): {row['top5']:.2f}"
                                      for label, row in result["by_group_size"].items()))
    if args.clip:
        print("CLIP text->image top-5", f"{result['clip']['top5']:.3f};", " | ".join(
            f"{label} ({row['num_concepts']}): {row['top5']:.2f}" for label, row in result["clip"]["by_group_size"].items()))
    if args.grid and misses:
        shown = misses[:12]
        reals = load_real([chosen[i][0] for i in shown]).images
        nearest_images = load_real([records[int(nearest[i])] for i in shown]).images
        size = dataset.image_size
        grid = Image.new("RGB", (3 * size, len(shown) * size), "white")  # a row per miss: real, drawn, nearest
        for row, i in enumerate(shown):
            for column, image in enumerate((reals[row], drawn[i].image, nearest_images[row])):
                grid.paste(image.resize((size, size)), (column * size, row * size))
        grid.save(args.grid)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
