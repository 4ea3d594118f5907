"""The README's grid of default-model images: a few emoji concepts (rows) asked in six languages (columns).

    python scripts/make_readme_grid.py [--model DIR] [--out docs/default_grid.png] [--seed 0]

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
    parser.add_argument("--seed", type=int, default=0, help="the seed of every cell")
    args = parser.parse_args()

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


if __name__ == "__main__":
    sys.exit(main())
