"""latentdiff: a complete, practical text-to-image latent diffusion toolkit.

Stages (each a `latentdiff <stage>` command, see `latentdiff.cli`):
prepare-data -> train-clip / train-vae / train-unet (or `train` for all three) -> generate,
evaluate, serve.
"""

__version__ = "0.1.0"
