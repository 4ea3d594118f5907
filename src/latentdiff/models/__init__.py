"""Builders for the three models (CLIP, VAE, U-Net) from a size preset or a pretrained folder/hub id."""
