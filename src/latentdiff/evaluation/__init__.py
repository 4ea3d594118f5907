"""Metrics and reports: fd_lite0 (Fréchet distance on EfficientNet-Lite0 features) with its noise floor,
prompt fidelity, CLIP score and retrieval, `shapes` attribute accuracy, VAE reconstruction quality."""
