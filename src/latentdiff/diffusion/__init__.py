"""Diffusion maths that is not a model: the scheduler registry (samplers users pick by name)."""
