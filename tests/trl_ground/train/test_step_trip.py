"""The shape of one default hybrid training step: the project files its calls pass through."""

import sys
from pathlib import Path

import torch

from tests.helpers import first_batch, make_trainer

PACKAGE = Path(__file__).resolve().parents[3] / "trl_ground"
MAX_FILES = 8


def project_files_of_one_step(trainer, batch) -> dict[str, set[str]]:
    """``{file under trl_ground/: the functions called in it}`` for one optimizer step
    (``Trainer.training_step``: loss and backward). ``rewards/`` is the scoring library the
    step calls through ``ScoringSettings.score``, with its own tests: not counted."""
    called: dict[str, set[str]] = {}
    root = str(PACKAGE)

    def profile(frame, event, arg):
        if event == "call" and frame.f_code.co_filename.startswith(root):
            called.setdefault(str(Path(frame.f_code.co_filename).relative_to(PACKAGE)), set()).add(frame.f_code.co_qualname)

    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1
    sys.setprofile(profile)
    try:
        trainer.training_step(trainer.model, batch)
    finally:
        sys.setprofile(None)
    return called


def test_one_default_step_passes_through_at_most_eight_files(tiny_model_dir, synthetic_data, tmp_path):
    trainer = make_trainer(tiny_model_dir, synthetic_data, tmp_path)
    batch = first_batch(trainer)
    torch.manual_seed(0)
    called = project_files_of_one_step(trainer, batch)
    assert "train/trainer.py" in called and "loss/rollout.py" in called  # the step was traced
    assert len(called) <= MAX_FILES, sorted(called)
