"""Kernels of one decode step, eager against ``torch.compile`` (CPU, the tiny model): a proxy
for how much the compiled decode step fuses, on a machine without a GPU.

    python benchmarks/count_decode_ops.py

Counts the aten operations that compute (views excluded) in one eager decode step of the
static sampler, with and without merged sampling weights, and the kernels Inductor generates
for the same step (``torch._inductor.metrics.generated_kernel_count``; matrix products stay
library calls, one per eager ``mm``). Inductor's CPU backend makes its own fusion choices, so
the GPU's counts differ; the ratio is what carries over. Quoted in ``benchmarks/NOTES_step.md``.
"""

import sys
import tempfile
from pathlib import Path

import transformers  # noqa: F401 - before torch._inductor (an import cycle otherwise)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    import torch
    from torch._inductor import metrics
    from torch.utils._python_dispatch import TorchDispatchMode

    import trl_ground.sampling.static as static
    from tests.helpers import make_trainer
    from trl_ground.data.synthetic import make_synthetic_dataset
    from trl_ground.model.tiny import build_tiny_qwen3vl
    from trl_ground.sampling.batches import prompts_from_sft_batch

    views = ("view", "t.default", "slice", "select", "transpose", "expand", "squeeze", "reshape", "permute", "alias",
             "detach", "as_strided", "split", "unbind")

    class CountOps(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.compute, self.matmuls = 0, 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            name = str(func)
            self.compute += not any(v in name for v in views)
            self.matmuls += name in ("aten.mm.default", "aten.addmm.default", "aten.bmm.default")
            return func(*args, **(kwargs or {}))

    work = Path(tempfile.mkdtemp())
    trainer = make_trainer(build_tiny_qwen3vl(work / "tiny", seed=0), make_synthetic_dataset(work / "data", n=30, seed=1), work / "out")
    tok = trainer.processing_class.tokenizer
    prompts = prompts_from_sft_batch(next(iter(trainer.get_train_dataloader())), tok.pad_token_id)
    layers = trainer.model.config.text_config.num_hidden_layers
    eager_forward = static._forward
    for merged in (False, True):
        counts = []

        def counting(*args, **kwargs):
            with CountOps() as mode:
                out = eager_forward(*args, **kwargs)
            counts.append(mode)
            return out

        static._forward = counting
        try:
            static.StaticSampler(bucket=16, merged_weights=merged).sample(trainer.model, prompts, tok, max_new_tokens=2, do_sample=False)
        finally:
            static._forward = eager_forward
        torch._dynamo.reset()
        metrics.reset()
        static.StaticSampler(bucket=16, merged_weights=merged, compile=True, compile_devices=("cpu",)).sample(
            trainer.model, prompts, tok, max_new_tokens=2, do_sample=False)
        eager = counts[0]
        print(f"merged weights {merged}, {layers} decoder layers: eager {eager.compute} computing aten ops per decode step "
              f"({eager.matmuls} matrix products); compiled {metrics.generated_kernel_count} generated kernels + {eager.matmuls} "
              f"matrix products = {metrics.generated_kernel_count + eager.matmuls}")


if __name__ == "__main__":
    main()
