"""Standard FID (Heusel et al. 2017) through torch-fidelity, when the user has InceptionV3 weights locally.

FID is only FID with the TensorFlow-ported InceptionV3 weights and torch-fidelity's exact resize, so we do
not re-implement it: `torch_fidelity.FeatureExtractorInceptionV3` extracts the 2048-d pool features and
`torch_fidelity.metric_fid` turns them into the number. torch-fidelity (like pytorch-fid and torchmetrics'
FID, which uses it) imports torchvision, which cannot be installed beside the CPU torch wheel on the
development machines; where it is missing, the report says so and gives no FID rather than a look-alike.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from latentdiff.errors import UserError

FID_FEATURE = "2048"
FID_BATCH_SIZE = 16


def check_inception_weights(path: str) -> Path:
    """The weights file, or one sentence. torch-fidelity loads it with full unpickling, so it is first
    read with `weights_only=True`, which refuses any file that is more than a plain dict of tensors."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise UserError(f"--inception-weights {path} is not a file; pass torch-fidelity's "
                        f"weights-inception-2015-12-05-6726825d.pth (or leave the option out).")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001  unpickling refused or not a torch file: both mean "not usable"
        raise UserError(f"--inception-weights {path} is not a plain state dict of tensors ({type(err).__name__}); "
                        f"pass torch-fidelity's InceptionV3 FID weights file.") from None
    if not isinstance(state, dict) or "fc.weight" not in state:
        raise UserError(f"--inception-weights {path} does not hold InceptionV3 FID weights (no fc.weight); pass "
                        f"torch-fidelity's weights-inception-2015-12-05-6726825d.pth.")
    return file


def fid_unavailable_reason() -> str | None:
    """None when torch-fidelity can be imported, else why not (one sentence)."""
    try:
        import torch_fidelity  # noqa: F401
    except ImportError as err:
        return (f"standard FID was not computed: torch-fidelity could not be imported ({err}); it needs torchvision, "
                f"which cannot be installed beside this CPU build of torch. fd_lite0 is the fidelity number here.")
    return None


def _uint8_batches(images: list, batch_size: int):

    for start in range(0, len(images), batch_size):
        arrays = [np.asarray(image.convert("RGB"), dtype=np.uint8) for image in images[start:start + batch_size]]
        yield torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()  # (B, 3, H, W) uint8


@torch.no_grad()
def inception_fid(generated: list, real: list, weights: Path) -> float:
    """FID between two lists of PIL images with torch-fidelity's InceptionV3 and its statistics code."""
    # torch-fidelity is optional (it needs torchvision, which this CPU torch build cannot have beside it)
    from torch_fidelity import FeatureExtractorInceptionV3
    from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_features_to_statistics, fid_statistics_to_metric

    extractor = FeatureExtractorInceptionV3("inception-v3-compat", [FID_FEATURE],
                                            feature_extractor_weights_path=str(weights))

    def features(images: list) -> torch.Tensor:
        return torch.cat([extractor(batch)[0] for batch in _uint8_batches(images, FID_BATCH_SIZE)])

    stats_generated = fid_features_to_statistics(features(generated))
    stats_real = fid_features_to_statistics(features(real))
    return float(fid_statistics_to_metric(stats_generated, stats_real, False)[KEY_METRIC_FID])
