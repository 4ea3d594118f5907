"""Built-in, fully offline sources of `latentdiff prepare-data`: each module has `read(cfg) -> SourceResult`.

- `emoji`: Noto Color Emoji glyphs, captions from the `emoji` package's names (14 languages)
- `clipart`: openclipart-svg drawings, captions from their title and keywords
- `fashion_mnist`: Fashion-MNIST product photos, templated captions from the 10 labels
- `shapes`: generated scenes of simple shapes whose true attributes are stored per image
"""

from __future__ import annotations

from pathlib import Path

from latentdiff.errors import UserError


def require_system_path(path: str | Path, package: str, source: str) -> Path:
    """The folder/file a Debian package installs, or one sentence saying what to install."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"The {source} source needs the system package {package} ({path} is missing); "
                        f"run `sudo apt-get install -y {package}` (or `make setup`).")
    return path


def require_english_only(languages: list[str], source: str) -> None:
    """Only the emoji source has names in other languages; say so instead of silently ignoring --languages."""
    if [lang for lang in languages if lang != "en"]:
        raise UserError(f"The {source} source has English captions only; drop --languages "
                        "(other languages exist for the emoji source).")
