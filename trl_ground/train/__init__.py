"""Training runs: the trainer, the main job, checks before loading, outputs and checkpoints."""
