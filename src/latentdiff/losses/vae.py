"""The VAE objective: reconstruction + a small KL term (Rombach et al. 2022, "High-Resolution Image
Synthesis with Latent Diffusion Models", Sec. 3 and App. G; `ldm.modules.losses.LPIPSWithDiscriminator`).

Reconstruction: L1 by default, as in the LDM autoencoders. L1 penalises small errors as much as large
ones, so the decoder is not pushed towards the blurry per-pixel mean that MSE (a Gaussian likelihood)
favours; MSE is offered because it is exactly what PSNR measures. (The LDM recipe adds LPIPS and a
patch GAN; neither has weights that can be had offline here, so they are left out.)

KL: the KL divergence of the encoder's diagonal Gaussian from N(0, I), weighted by 1e-6 like LDM's
`kl_weight`. The weight only keeps the latent space from drifting arbitrarily far; it is too small to
make the latents unit-variance, which is why the diffusion model rescales them by `scaling_factor`
(1 / std, measured on the training data at export; diffusers keeps it in the VAE config).

Colour term (optional, `colour_weight`): L1 between the two images average-pooled over `cell_size` x
`cell_size` pixel cells (4 by default; 1 compares every pixel, the error CIEDE2000 measures). A per-pixel
loss is dominated by edges and fine detail; a shift of an area's mean colour (a red apple turned orange,
a flat emoji face turned yellow) is a small per-pixel error spread over many pixels, which this term
weighs as a person sees it. `colour_space="lab"` compares the cells' colours in
CIELAB (kornia's differentiable sRGB -> Lab, the space of the CIEDE2000 error we measure) instead of sRGB:
equal steps there are about equally visible, while in sRGB a hue shift of a saturated red costs less than
a barely visible change of a dark grey. Lab values are divided by LAB_SCALE so that the term is O(1) like
the sRGB one (L spans 0-100, as sRGB in [-1, 1] spans 2).

Normalisation: LDM sums both terms over elements per image; we average the reconstruction over pixels and
divide the per-image KL sum by the same number of pixel values, so the ratio of the two terms, and
therefore the meaning of `kl_weight`, is LDM's while the loss stays O(1) for any image size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from latentdiff.config import VAE_COLOUR_CELL_SIZE as DEFAULT_COLOUR_CELL_SIZE
from latentdiff.config import VAE_COLOUR_SPACES as COLOUR_SPACES
from latentdiff.config import VAE_KL_WEIGHT as DEFAULT_KL_WEIGHT
from latentdiff.config import VAE_RECONSTRUCTION_LOSS as DEFAULT_RECONSTRUCTION_LOSS
from latentdiff.config import VAE_RECONSTRUCTION_LOSSES as RECONSTRUCTION_LOSSES

LAB_SCALE = 50.0  # CIELAB units per unit of the Lab colour term: L's 0-100 becomes 0-2, sRGB's [-1, 1] range


def reconstruction_loss(reconstruction: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    """Mean over every pixel value. Both (B, 3, H, W) in [-1, 1]."""
    if kind == "l1":
        return F.l1_loss(reconstruction, target)
    if kind == "mse":
        return F.mse_loss(reconstruction, target)
    raise ValueError(f"unknown reconstruction loss {kind!r}; choose one of {RECONSTRUCTION_LOSSES}")


def kl_per_pixel_value(posterior, num_pixel_values: int) -> torch.Tensor:
    """KL(q(z|x) || N(0, I)) summed over the latent (diffusers' `DiagonalGaussianDistribution.kl()`
    gives one number per image), divided by C*H*W of the image, averaged over the batch."""
    return posterior.kl().mean() / num_pixel_values


def colour_loss(reconstruction: torch.Tensor, target: torch.Tensor, space: str = "rgb",
                cell_size: int = DEFAULT_COLOUR_CELL_SIZE) -> torch.Tensor:
    """L1 between the mean colours of cell_size x cell_size cells, in sRGB or CIELAB / LAB_SCALE:
    (B, 3, H, W) in [-1, 1] -> scalar."""
    # (B, 3, H / cell_size, W / cell_size); a cell size of 1 leaves the images as they are
    cells_rec, cells_target = F.avg_pool2d(reconstruction, cell_size), F.avg_pool2d(target, cell_size)
    if space == "rgb":
        return F.l1_loss(cells_rec, cells_target)
    if space == "lab":
        from kornia.color import rgb_to_lab

        # sRGB in [0, 1] -> Lab; the decoder's output is clamped like the saved images
        lab = lambda cells: rgb_to_lab(((cells + 1) / 2).clamp(0, 1)) / LAB_SCALE  # noqa: E731
        return F.l1_loss(lab(cells_rec), lab(cells_target))
    raise ValueError(f"unknown colour space {space!r}; choose one of {COLOUR_SPACES}")


def vae_loss(decoded: torch.Tensor, pixels: torch.Tensor, posterior, *, kl_weight: float = DEFAULT_KL_WEIGHT,
             reconstruction: str = DEFAULT_RECONSTRUCTION_LOSS,
             colour_weight: float = 0.0, colour_space: str = "rgb",
             colour_cell_size: int = DEFAULT_COLOUR_CELL_SIZE) -> tuple[torch.Tensor, dict[str, float]]:
    """The loss of one batch: `pixels` (B, 3, H, W) in [-1, 1], `decoded` the VAE's reconstruction of
    them from a latent sampled from `posterior` (the encoder's DiagonalGaussianDistribution)."""
    rec = reconstruction_loss(decoded, pixels, reconstruction)
    kl = kl_per_pixel_value(posterior, pixels[0].numel())
    loss = rec + kl_weight * kl
    logs = {"reconstruction": float(rec.detach()), "kl": float(kl.detach())}
    if colour_weight > 0:
        colour = colour_loss(decoded, pixels, colour_space, colour_cell_size)
        loss = loss + colour_weight * colour
        logs["colour"] = float(colour.detach())
    return loss, logs
