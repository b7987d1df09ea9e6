"""Sampling answers inside the training step and for prediction: prompt batches, the samplers."""

# The samplers ``make_sampler`` builds (``samplers.py``); here so that the configs can list
# them without importing torch
SAMPLER_NAMES = ("static", "generate", "speculative")
