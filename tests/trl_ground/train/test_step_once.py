"""Work a hybrid step does once: the SFT batch's prompt lengths are computed once, packed or
not (the packed pass's loss and gradients: tests/trl_ground/loss/test_fused_pass.py and
tests/trl_ground/train/test_trainer.py)."""

import sys

import torch

from tests.helpers import first_batch, make_trainer
from trl_ground.sampling import batches


def test_a_step_computes_the_prompt_lengths_once(tiny_model_dir, synthetic_data, tmp_path, monkeypatch):
    """``sft_prompt_lengths`` runs once per sampling step: the prompts cut out for sampling and
    (``pack_samples``) the packed rows share it; the packed step's loss is the unpacked one's."""
    losses = {}
    for pack in (True, False):
        trainer = make_trainer(tiny_model_dir, synthetic_data, tmp_path / str(pack), "--gradient-accumulation-steps", "1",
                               "--pack-samples", str(pack).lower())
        batch = first_batch(trainer)
        real, calls = batches.sft_prompt_lengths, []

        def counted(*args, _real=real, _calls=calls, **kwargs):
            _calls.append(1)
            return _real(*args, **kwargs)

        # wherever a module of the package holds the function (imported by name)
        for module in [m for name, m in sys.modules.items() if name.startswith("trl_ground")]:
            if getattr(module, "sft_prompt_lengths", None) is real:
                monkeypatch.setattr(module, "sft_prompt_lengths", counted)
        torch.manual_seed(0)
        with torch.no_grad():
            losses[pack] = trainer.compute_loss(trainer.model, dict(batch))
        monkeypatch.undo()
        assert len(calls) == 1, pack
    torch.testing.assert_close(losses[True], losses[False], rtol=1e-5, atol=1e-6)
