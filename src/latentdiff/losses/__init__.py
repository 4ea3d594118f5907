"""Training objectives, one module per model: contrastive (CLIP), VAE (reconstruction + KL), diffusion."""
