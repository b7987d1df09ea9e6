"""Reproduces the NaN of the bf16-autocast sampler on a GPU (an open bug; see
benchmarks/NOTES_learning.md): full fine-tuning of the learning benchmark's warm start
(fp32 weights), hybrid loss at batch 64, K = 2. With ``autocast`` the sampler runs under
bf16 autocast as it did before ``sampling_autocast`` (now ``trl_ground.sampling.decoding``) kept fp32 models in fp32, and
the first sampling step inside ``trainer.train()`` fails (``probability tensor contains
either inf, nan or element < 0``, 2026-12-04, H200); the same sampler on the same model
under the same autocast outside the training step gave finite logits. With ``fp32`` (the
default path now) it trains.

    python benchmarks/device/diagnose_autocast_nan.py autocast|fp32     # CUDA GPU
"""
import sys, json, torch
from pathlib import Path
from transformers import TrainerCallback
from trl_ground.benchmarks.warm_start import unpack_warm
from trl_ground.data.synthetic import make_synthetic_dataset
from trl_ground.config import parse_args
from trl_ground.train.job import build_trainer
import trl_ground.sampling.decoding as decoding
tmp = Path("/tmp/nan"); tmp.mkdir(exist_ok=True)
model_dir = unpack_warm(Path("benchmarks/warm_start"), tmp / "unp")
make_synthetic_dataset(tmp/"data", n=1500, seed=3, size=128, max_objects=4, test_fraction=0.02, workers=8)
s = json.loads((model_dir/"warm_start.json").read_text())["settings"]
force = sys.argv[1] == "autocast"
if force:
    decoding.weights_dtype = lambda model: torch.bfloat16  # sample under bf16 autocast as before the fix
argv = ["--model", str(model_dir), "--train-json", str(tmp/"data"/"train.json"), "--img-root", str(tmp/"data"), "--add-negatives", "true",
  "--negative-fraction", "0.25", "--max-pixels", str(128*128), "--image-check", "false", "--system-prompt", s["system_prompt"], "--query-template", s["query_template"],
  "--output-dir", str(tmp/"out"), "--batch-size", "64", "--no-use-lora", "--no-load-in-4bit", "--gradient-checkpointing", "false", "--report-to", "none",
  "--overwrite-output-dir", "true", "--num-generations", "2", "--max-completion-length", "64", "--lr", "6e-4", "--lr-scheduler-type", "constant",
  "--max-steps", "12", "--logging-steps", "1", "--save-strategy", "no", "--max-grad-norm", "1.0", "--disable-tqdm", "true"]
trainer = build_trainer(*parse_args(argv))
class Check(TrainerCallback):
    def on_step_end(self, args, state, control, model=None, **kw):
        bad = [n for n, p in trainer.model.named_parameters() if not torch.isfinite(p).all()]
        print(f"step {state.global_step}: non-finite params {len(bad)} {bad[:2]}", flush=True)
    def on_log(self, args, state, control, logs=None, **kw):
        print("  log", {k: logs[k] for k in ("loss", "grad_norm", "grounding_cost") if k in (logs or {})}, flush=True)
trainer.add_callback(Check())
try:
    trainer.train()
    print("trained 12 steps", flush=True)
except Exception as e:
    print("FAILED", type(e).__name__, str(e)[:200], flush=True)
