"""The README's grids: the emoji model's concepts (rows) asked in six languages (columns), or the shapes
model's compositional prompts (rows) at six seeds (columns).

    python scripts/make_readme_grid.py [--model DIR] [--out docs/default_grid.png] [--seed 0]
    python scripts/make_readme_grid.py --shapes        # --model shapes, docs/shapes_grid.png

Each cell is the PNG that `latentdiff generate "NAME" --seed SEED` writes (the CLI's own `main`, run
in-process), one seed per row so a row differs only by the prompt's language. The prompts are the
`emoji` package's names, turned into captions exactly as `latentdiff prepare-data emoji` does. Writes the
grid PNG and, beside it, a JSON file with the prompt of every cell (the README lists them).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[1]
# Fixed before looking at any output: everyday objects with distinct colours and shapes.
CONCEPTS = ("🍎", "🚀", "🌵", "🐳", "🔥")
LANGUAGES = ("en", "fr", "es", "de", "zh", "ja")
# Fixed before looking at any output: one of each kind of caption the shapes dataset has (single shapes with a
# colour, a size, a position; two shapes in a relation; a count), all scenes the test split may hold.
SHAPES_PROMPTS = ("a red circle", "a large blue square on the left", "a small yellow star at the top",
                  "a red circle to the left of a blue square", "a green triangle above a purple diamond",
                  "two orange circles")
SHAPES_SEEDS = 6
TILE = 64  # pixels: the model's training size
GAP = 2  # white pixels between tiles


def prompts_for(char: str, languages: tuple[str, ...]) -> dict[str, str]:
    import emoji

    from latentdiff.data.sources.emoji import name_to_caption

    emoji.config.load_language(list(languages))
    data = emoji.EMOJI_DATA[char]
    return {code: name_to_caption(data[code]) for code in languages}


def generate_one(prompt: str, seed: int, model: str | None, work: Path) -> Image.Image:
    from latentdiff.stages.generate import main as generate

    out = work / f"cell{len(list(work.iterdir()))}"
    argv = [prompt, "--seed", str(seed), "--out", str(out)] + (["--model", model] if model else [])
    if generate(argv) != 0:
        raise SystemExit(f"latentdiff generate failed for {prompt!r}")
    (path,) = [p for p in out.glob("*.png") if not p.name.startswith("grid-")]
    with Image.open(path) as image:
        return image.convert("RGB").resize((TILE, TILE), Image.BICUBIC)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="a pipeline folder (default: the bundled model)")
    parser.add_argument("--out", default=str(REPO / "docs" / "default_grid.png"))
    parser.add_argument("--seed", type=int, default=0, help="the seed of every cell (--shapes: of the first column)")
    parser.add_argument("--shapes", action="store_true", help="the shapes model's grid: prompts x seeds")
    args = parser.parse_args()
    if args.shapes:
        return shapes_grid(args.model or "shapes", Path(args.out if args.out != parser.get_default("out")
                                                        else REPO / "docs" / "shapes_grid.png"), args.seed)

    rows = [prompts_for(char, LANGUAGES) for char in CONCEPTS]
    grid = Image.new("RGB", (len(LANGUAGES) * (TILE + GAP) - GAP, len(rows) * (TILE + GAP) - GAP), "white")
    with tempfile.TemporaryDirectory() as tmp:
        for r, prompts in enumerate(rows):
            for c, code in enumerate(LANGUAGES):
                grid.paste(generate_one(prompts[code], args.seed, args.model, Path(tmp)), (c * (TILE + GAP), r * (TILE + GAP)))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    grid.save(out, optimize=True)
    table = {"seed": args.seed, "languages": list(LANGUAGES), "rows": [
        {"emoji": char, "prompts": prompts} for char, prompts in zip(CONCEPTS, rows)]}
    out.with_suffix(".json").write_text(json.dumps(table, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {out} ({grid.size[0]}x{grid.size[1]}) and {out.with_suffix('.json')}")
    for char, prompts in zip(CONCEPTS, rows):
        print(char, " | ".join(prompts[code] for code in LANGUAGES))
    return 0


def shapes_grid(model: str, out: Path, first_seed: int) -> int:
    seeds = list(range(first_seed, first_seed + SHAPES_SEEDS))
    grid = Image.new("RGB", (len(seeds) * (TILE + GAP) - GAP, len(SHAPES_PROMPTS) * (TILE + GAP) - GAP), "white")
    with tempfile.TemporaryDirectory() as tmp:
        for r, prompt in enumerate(SHAPES_PROMPTS):
            for c, seed in enumerate(seeds):
                grid.paste(generate_one(prompt, seed, model, Path(tmp)), (c * (TILE + GAP), r * (TILE + GAP)))
    out.parent.mkdir(parents=True, exist_ok=True)
    grid.save(out, optimize=True)
    out.with_suffix(".json").write_text(json.dumps({"model": model, "seeds": seeds, "rows": list(SHAPES_PROMPTS)},
                                                   indent=2) + "\n")
    print(f"wrote {out} ({grid.size[0]}x{grid.size[1]}) and {out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
