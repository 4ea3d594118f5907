"""Fréchet distance between two sets of image features, and its noise floor.

d^2 = |mu_1 - mu_2|^2 + Tr(S_1 + S_2 - 2 (S_1 S_2)^(1/2))   (Fréchet 1957; Dowson & Landau 1982; used as
FID by Heusel et al. 2017 on Inception features). Computed in float64 with symmetric eigendecompositions:
Tr((S_1 S_2)^(1/2)) = sum_i sqrt(lambda_i(S_1^(1/2) S_2 S_1^(1/2))), whose matrix is symmetric PSD, so
no complex square roots and no scipy are needed, and the same features give the same number.

The estimate is biased upward for small sets (with fewer images than feature dimensions the covariances
are rank-deficient), so distances are only comparable at the same number of images: the noise floor
(two disjoint halves of the real images) is reported next to a model distance computed at the same size.
"""

from __future__ import annotations

import torch

from latentdiff.errors import UserError

# Below this many images per set the covariance estimate is mostly sampling noise; 2 is the bare
# mathematical minimum, 10 keeps the number from being meaningless on tiny test splits.
MIN_FRECHET_IMAGES = 10


def check_enough_images(count: int, what: str, *, halves: bool = False, fix: str = "") -> None:
    """UserError (one sentence, with the number needed) when `count` images cannot give a distance;
    `fix` says what to do (default: prepare a dataset with a larger split)."""
    needed = 2 * MIN_FRECHET_IMAGES if halves else MIN_FRECHET_IMAGES
    if count < needed:
        why = " (the noise floor splits them into two halves)" if halves else ""
        fix = fix or "prepare a dataset with a larger test split"
        raise UserError(f"A Fréchet distance needs at least {needed} {what}{why} but only {count} are available; {fix}.")


def feature_statistics(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """features: (N, D) -> mean (D,), unbiased covariance (D, D), both float64."""
    features = features.double()
    mean = features.mean(dim=0)
    centred = features - mean
    cov = centred.T @ centred / (features.shape[0] - 1)
    return mean, cov


def _sqrt_psd(matrix: torch.Tensor) -> torch.Tensor:
    """Square root of a symmetric positive semi-definite matrix; tiny negative eigenvalues from rounding
    are clipped to 0."""
    eigvals, eigvecs = torch.linalg.eigh((matrix + matrix.T) / 2)
    return (eigvecs * eigvals.clamp(min=0).sqrt()) @ eigvecs.T


def frechet_distance_from_stats(mean_1: torch.Tensor, cov_1: torch.Tensor,
                                mean_2: torch.Tensor, cov_2: torch.Tensor) -> float:
    sqrt_cov_1 = _sqrt_psd(cov_1)
    middle = sqrt_cov_1 @ cov_2 @ sqrt_cov_1  # symmetric PSD, same eigenvalues as cov_1 @ cov_2
    eigvals = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp(min=0)
    trace_sqrt = eigvals.sqrt().sum()
    distance = (mean_1 - mean_2).square().sum() + torch.trace(cov_1) + torch.trace(cov_2) - 2 * trace_sqrt
    return float(distance.clamp(min=0))


def frechet_distance(features_1: torch.Tensor, features_2: torch.Tensor) -> float:
    """(N1, D), (N2, D) -> squared Fréchet distance between the Gaussians fitted to each set.

    With fewer images than dimensions (the usual case here: 1280-d features) the same number comes from
    the centred feature matrices X_1 (N1, D), X_2 (N2, D): S_k = X_k^T X_k / (N_k - 1), and the non-zero
    eigenvalues of S_1 S_2 are the squared singular values of X_1 X_2^T / sqrt((N1-1)(N2-1)), so
    Tr((S_1 S_2)^(1/2)) is that matrix's nuclear norm: an (N1, N2) SVD instead of two (D, D)
    eigendecompositions, exact, and much cheaper."""
    if features_1.shape[0] < 2 or features_2.shape[0] < 2:
        raise ValueError("a Fréchet distance needs at least 2 feature vectors per set")
    if min(features_1.shape[0], features_2.shape[0]) >= features_1.shape[1]:
        return frechet_distance_from_stats(*feature_statistics(features_1), *feature_statistics(features_2))
    x_1, x_2 = features_1.double(), features_2.double()
    mean_1, mean_2 = x_1.mean(dim=0), x_2.mean(dim=0)
    x_1, x_2 = x_1 - mean_1, x_2 - mean_2  # centred, (N1, D) and (N2, D)
    dof_1, dof_2 = x_1.shape[0] - 1, x_2.shape[0] - 1
    trace_sqrt = torch.linalg.svdvals(x_1 @ x_2.T).sum() / (dof_1 * dof_2) ** 0.5
    distance = ((mean_1 - mean_2).square().sum() + x_1.square().sum() / dof_1 + x_2.square().sum() / dof_2
                - 2 * trace_sqrt)
    return float(distance.clamp(min=0))


def split_halves(count: int) -> tuple[list[int], list[int]]:
    """Two disjoint halves of range(count), interleaved (even, odd indices) so that each half covers the
    whole split the same way whatever order the images come in; deterministic."""
    indices = list(range(count - count % 2))
    return indices[0::2], indices[1::2]
