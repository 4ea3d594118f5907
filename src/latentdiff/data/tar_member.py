"""One image stored in a webdataset tar shard, read at the offset `prepare-data --format webdataset`
recorded for it (one seek, one read; no scan of the tar). Kept apart from `data/shards.py` (which writes and
indexes shards) so `data/prepared.py` can open either layout without importing the writer."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

from latentdiff.errors import UserError


def read_member(shard: Path, offset: int, size: int) -> bytes:
    """The bytes of one tar member at a known offset (one seek, one read)."""
    with open(shard, "rb") as fh:
        fh.seek(offset)
        data = fh.read(size)
    if len(data) != size:
        raise UserError(f"{shard} is shorter than its index says (a truncated copy?); copy the dataset again or "
                        f"prepare it again with `latentdiff prepare-data ... --format webdataset`.")
    return data


def open_member_image(shard: Path, offset: int, size: int):
    """A PIL image of the PNG stored at `offset` in `shard`."""
    return Image.open(io.BytesIO(read_member(shard, offset, size)))
