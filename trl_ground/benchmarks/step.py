"""Cost of one hybrid training step on the real Qwen3-VL architecture (CUDA GPU).

    trl-ground-bench-step --assets ../shared/assets --out benchmarks/step_8b_h200.json
    trl-ground-bench-step --lora16 ...           # 16-bit LoRA: bf16 base, no quantization
    trl-ground-bench-step --answer-boxes 30 ...  # crowded scenes: 30-box answers
    trl-ground-bench-step --combine a.json b.json --lora16-runs c.json d.json --crowded e.json --out X.json

Builds the model from a real ``config.json`` with random weights (the cost of a step does not
depend on the weights), saves it and reloads it in 4-bit NF4 through the project's loader
(the real QLoRA path; ``--lora16``: in bf16), adds LoRA r16 on the language attention + MLP,
and feeds a batch of 448 px synthetic images with the default grounding prompt through the
project's trainer. All variants are measured in one run, after warm-up (which compiles and
captures), as the median of several repetitions:

- ``sft_step_s``: one optimizer step of plain SFT (LM loss only);
- ``hybrid_step_s``: the same with the grounding terms and the trainer's default speed
  settings (``settings.default_lever``: sampler, merged weights as the memory rule decides,
  ``torch.compile``, packing), sampling every step, one answer per example, ``--new-tokens``
  tokens forced so that random weights cannot stop early;
- ``hybrid_<lever>_step_s``: the same with each lever of :data:`LEVERS` (``variants`` holds
  each one's settings; a variant equal to one already measured is copied, not re-run);
  ``speculative`` drafts from the targets, which a random model never follows: its worst case;
- ``hybrid_step_k4_s`` (``--k4``): 4 answers per prompt; ``hybrid_naive_step_s`` (``--naive``):
  sampling with ``model.generate``;
- ``generate_ms_per_token``: ``model.generate`` with default settings, same prompts;
  ``sampler_<variant>_ms_per_token``: the static sampler of each of :data:`DECODE_VARIANTS`,
  and ``sampler_ms_per_token`` the default one's; ``speculative_full_acceptance_*``: the
  speculative sampler's best case (drafts = the model's own greedy answers);
- ``*_peak_gb``: peak CUDA memory (10^9 bytes) of each step, ``*_sampling_peak_gb`` of its
  sampling part, ``weights_gb`` after loading;
- the greedy agreement of each sampler with ``generate`` on this model, and the log-probability
  gap between the merged sampling model and the trained one.

``--combine`` writes the committed file: both QLoRA runs under ``runs``, the top-level
figures from the worse of them (higher default hybrid / SFT ratio), the 16-bit LoRA figures
under ``lora16`` (worse run) and the crowded case under ``crowded``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from trl_ground.benchmarks import benchmark_command

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _sync():
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _timed(fn, reps: int, warmup: int):
    """``(median seconds, peak CUDA memory in 10^9 bytes, all times)`` of ``fn``."""
    import torch

    for _ in range(warmup):
        fn()
    _sync()
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(reps):
        _sync()
        start = time.perf_counter()
        fn()
        _sync()
        times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated() / 1e9 if torch.cuda.is_available() else 0.0
    return statistics.median(times), peak, times


def build_random_checkpoint(config_json: Path, out_dir: Path) -> None:
    """Random weights in the real architecture, saved like a downloaded checkpoint."""
    import torch
    from transformers import AutoConfig, Qwen3VLForConditionalGeneration

    config_dir = Path(tempfile.mkdtemp())
    (config_dir / "config.json").write_text(config_json.read_text())
    config = AutoConfig.from_pretrained(config_dir)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = Qwen3VLForConditionalGeneration._from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(out_dir)
    del model
    gc.collect()
    torch.cuda.empty_cache()


def build_dataset_for_bench(batch: int, image_size: int, seed: int = 0, answer_boxes: int | None = None):
    """Synthetic scenes of ``image_size`` px through the project's data pipeline; the first
    ``batch`` examples with at least one box. With ``answer_boxes``, every target answer
    (and ground truth) holds that many boxes instead: a crowded scene's answer length."""
    import numpy as np
    from datasets import Dataset

    from rewards import to_qwen_answer
    from trl_ground.config import DataArguments
    from trl_ground.data.dataset import ImageLoader, build_examples
    from trl_ground.data.records import load_records
    from trl_ground.data.synthetic import make_synthetic_dataset

    train, _, root = make_synthetic_dataset(Path(tempfile.mkdtemp()), n=batch * 3, seed=seed, test_fraction=0.0, size=image_size, max_objects=6)
    args = DataArguments(max_pixels=image_size * image_size)
    rows = [r for r in build_examples(load_records(train, root)[0], args) if r["gt_boxes"]][:batch]
    if answer_boxes:
        rng = np.random.default_rng(seed)
        for row in rows:
            corner = rng.uniform(0, 0.9, size=(answer_boxes, 2))
            boxes = np.concatenate([corner, corner + rng.uniform(0.02, 0.1, size=(answer_boxes, 2))], axis=1)
            row["gt_boxes"] = boxes.tolist()
            row["completion"] = [{"role": "assistant", "content": to_qwen_answer(boxes, row["class"])}]
    dataset = Dataset.from_list(rows)
    dataset.set_transform(ImageLoader(args.min_pixels, args.max_pixels))
    return dataset


def run(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--assets", default="../shared/assets", help="folder with qwen3vl-configs/ and qwen3vl-processor/")
    ap.add_argument("--config-json", help="model config.json (default: the 8B one under --assets)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--image-size", type=int, default=448)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--lora-r", type=int, default=16)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--naive-reps", type=int, default=2)
    ap.add_argument("--levers", nargs="*", default=list(LEVERS), choices=list(LEVERS),
                    help="the hybrid step with each of these speed levers (default: all), besides the default settings")
    ap.add_argument("--k4", action="store_true", help="also the default hybrid step with K = 4 answers per prompt")
    ap.add_argument("--naive", action="store_true", help="also the hybrid step sampling with model.generate")
    ap.add_argument("--skip-generate", action="store_true", help="skip timing model.generate (slow for long answers)")
    ap.add_argument("--skip-decode", action="store_true", help="skip the decode-only timings (generate and samplers)")
    ap.add_argument("--lora16", action="store_true", help="16-bit LoRA: a bf16 base instead of NF4")
    ap.add_argument("--answer-boxes", type=int, help="crowded scenes: target answers of this many boxes, and as many tokens sampled")
    ap.add_argument("--out", default="benchmarks/step_8b_h200.json")
    ap.add_argument("--smoke", action="store_true", help="CPU check of the script itself: tiny model, no 4-bit, 1 rep")
    ap.add_argument("--combine", nargs="+", metavar="JSON", help="write --out from these QLoRA runs' results instead of running")
    ap.add_argument("--lora16-runs", nargs="*", default=[], metavar="JSON", help="with --combine: the --lora16 runs")
    ap.add_argument("--crowded", nargs="*", default=[], metavar="JSON", help="with --combine: the --answer-boxes runs")
    args = ap.parse_args(argv)
    if args.combine:
        result = combine_runs(args.combine, args.lora16_runs, args.crowded)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
        return result
    if args.smoke:
        args.batch, args.image_size, args.new_tokens, args.reps, args.warmup, args.naive_reps = 2, 64, 4, 1, 0, 1

    import torch
    import transformers

    if not (args.smoke or torch.cuda.is_available()):
        raise ValueError("trl-ground-bench-step measures a CUDA GPU and this machine has none (--smoke checks the script on the CPU)")
    from trl_ground.config import GroundingSFTConfig, ModelArguments
    from trl_ground.data.collator import GroundingCollator
    from trl_ground.model.loading import load_model, load_processor
    from trl_ground.sampling.batches import prompts_from_sft_batch
    from trl_ground.sampling.decoding import sampling_autocast
    from trl_ground.sampling.samplers import make_sampler
    from trl_ground.sampling.static import StaticSampler
    from trl_ground.train.trainer import GroundingSFTTrainer

    cuda = torch.cuda.is_available()

    assets = Path(args.assets)
    config_json = Path(args.config_json) if args.config_json else assets / "qwen3vl-configs" / "Qwen3-VL-8B-Instruct.config.json"
    if args.smoke:
        from trl_ground.model.tiny import build_tiny_qwen3vl

        tiny = build_tiny_qwen3vl(Path(tempfile.mkdtemp()) / "tiny")
        config_json, processor_dir = tiny / "config.json", tiny
    else:
        processor_dir = assets / "qwen3vl-processor"
    out_path = Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    result: dict = {
        "date": time.strftime("%Y-%m-%d"),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none (CPU smoke run)",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "settings": {
            "config": config_json.name, "quantization": "none (bf16 base, 16-bit LoRA)" if args.lora16 else "nf4 double-quant, bf16 compute",
            "lora_r": args.lora_r, "answer_boxes": args.answer_boxes,
            "lora_targets": "language attention q/k/v/o + MLP gate/up/down", "batch": args.batch,
            "image_px": args.image_size, "new_tokens_forced": args.new_tokens, "reps": args.reps, "warmup": args.warmup,
            "gradient_checkpointing": True, "optimizer": "adamw_torch (TRL default)",
        },
    }

    def save():
        out_path.write_text(json.dumps(result, indent=2) + "\n")
        if os.environ.get("OUT"):
            Path(os.environ["OUT"], out_path.name).write_text(json.dumps(result, indent=2) + "\n")

    t0 = time.perf_counter()
    ckpt = Path(tempfile.mkdtemp()) / "qwen3vl-random"
    build_random_checkpoint(config_json, ckpt)
    processor = load_processor(str(processor_dir), args.image_size**2)
    processor.save_pretrained(ckpt)
    model_args = ModelArguments(
        model=str(ckpt), load_in_4bit=not (args.smoke or args.lora16), lora_r=args.lora_r, lora_alpha=args.lora_r,
        finetune_attention_modules=True, finetune_mlp_modules=True,
    )
    device_map = {"": 0} if torch.cuda.is_available() else None
    model = load_model(model_args, gradient_checkpointing=True, device_map=device_map)
    shutil.rmtree(ckpt.parent, ignore_errors=True)  # 17 GB for the 8B model; the weights are loaded
    result["setup_s"] = round(time.perf_counter() - t0, 1)
    result["weights_gb"] = round(torch.cuda.memory_allocated() / 1e9, 2) if cuda else 0.0
    result["settings"]["gradient_checkpointing"] = bool(model.is_gradient_checkpointing)
    dataset = build_dataset_for_bench(args.batch, args.image_size, answer_boxes=args.answer_boxes)
    collator = GroundingCollator(processor)
    batch = collator([dataset[i] for i in range(len(dataset))])
    if args.answer_boxes:  # sample as many tokens as the target answers hold
        args.new_tokens = int((batch["labels"] != -100).sum(dim=1).max())
        result["settings"]["new_tokens_forced"] = args.new_tokens
    result["settings"]["prompt_tokens"] = int(prompts_from_sft_batch(batch, processor.tokenizer.pad_token_id).input_ids.shape[1])
    result["settings"]["sft_tokens"] = int(batch["input_ids"].shape[1])

    config = GroundingSFTConfig(
        output_dir=tempfile.mkdtemp(), per_device_train_batch_size=args.batch, gradient_accumulation_steps=1,
        max_steps=1000, logging_steps=1000, save_strategy="no", report_to="none", bf16=not args.smoke,
        max_completion_length=args.new_tokens, sample_min_new_tokens=args.new_tokens, learning_rate=1e-5,
    )
    trainer = GroundingSFTTrainer(model=model, args=config, train_dataset=dataset, processing_class=processor, data_collator=collator)
    trainer.create_optimizer_and_scheduler(num_training_steps=1000)
    trainer.current_gradient_accumulation_steps = 1  # set by train(), which the benchmark does not call
    device_batch = trainer._prepare_inputs(batch)

    def step():
        with trainer.accelerator.autocast():  # what accelerator.prepare adds to the forward in train()
            trainer.training_step(trainer.model, dict(device_batch))
        trainer.optimizer.step()
        trainer.optimizer.zero_grad(set_to_none=True)

    sampling_peaks = []
    real_sample = trainer._sample

    def sample_and_record_peak(*a, **kw):  # the sampling part's own peak memory
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        out = real_sample(*a, **kw)
        if cuda:
            sampling_peaks.append(torch.cuda.max_memory_allocated() / 1e9)
        return out

    trainer._sample = sample_and_record_peak
    performance = trainer.args.performance
    default_lever = (performance.sampler, bool(getattr(trainer.sampler, "merged_weights", False)), performance.sampler_compile,
                     performance.pack_samples)
    result["settings"]["default_lever"] = dict(zip(LEVER_FIELDS, default_lever))
    trainer.sampler = None  # each variant gets a fresh sampler: no merged copy of another variant in its peak
    measured: dict[tuple, str] = {}

    def variant(name, lever, reps, warmup, **settings):
        """Time a step with ``lever`` = (sampler, merged weights, compiled, packed) and ``settings``
        (options of the config); a variant whose settings were already measured is copied."""
        key = (lever, tuple(sorted(settings.items())))
        result.setdefault("variants", {})[name] = {**dict(zip(LEVER_FIELDS, lever)), **settings}
        if key in measured:
            for suffix in ("_s", "_peak_gb", "_sampling_peak_gb", "_sample_seconds", "_importance", "_speculative"):
                if f"{measured[key]}{suffix}" in result:
                    result[f"{name}{suffix}"] = result[f"{measured[key]}{suffix}"]
            return
        measured[key] = name
        sampler_name, merged, compiled, packed = lever
        for option, value in settings.items():
            setattr(trainer.args, option, value)
        performance.pack_samples = packed
        trainer.sampler = None
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()
        trainer.sampler = make_sampler(sampler_name, merged_weights=merged, compile=compiled, speculative_block=performance.speculative_block)
        trainer._metrics["train"].clear()
        sampling_peaks.clear()
        median, peak, times = _timed(step, reps, warmup)
        result[f"{name}_s"] = round(median, 4)
        result[f"{name}_peak_gb"] = round(peak, 2)
        if sampling_peaks:
            result[f"{name}_sampling_peak_gb"] = round(max(sampling_peaks), 2)
        metrics = {k: sum(v) / len(v) for k, v in trainer._metrics["train"].items() if v}
        logged = {k: round(v, 5) for k, v in metrics.items() if k.startswith("sampling/")}
        if logged:
            result[f"{name}_importance"] = logged
        if "sample_seconds" in metrics:
            result[f"{name}_sample_seconds"] = round(metrics["sample_seconds"], 4)
        graphs = getattr(trainer.sampler, "graphs", None)
        if graphs is not None:
            result.setdefault("compile_failed", {})[name] = graphs.compile_failed
        result.setdefault("all_times_s", {})[name] = [round(t, 4) for t in times]
        save()
        print(f"{name}: {median:.3f} s, peak {peak:.1f} GB", flush=True)

    hybrid = dict(grounding_loss=True, num_generations=1)
    variant("sft_step", default_lever, args.reps, args.warmup, grounding_loss=False)
    variant("hybrid_step", default_lever, args.reps, args.warmup, **hybrid)
    for lever in args.levers:
        try:
            variant(f"hybrid_{lever}_step", LEVERS[lever], args.reps, args.warmup, **hybrid)
        except Exception as err:  # noqa: BLE001 - keep the other figures of this (expensive) run
            result.setdefault("errors", {})[lever] = repr(err)
            save()
    if args.k4:
        variant("hybrid_step_k4", default_lever, args.reps, args.warmup, grounding_loss=True, num_generations=4)
    if args.naive:
        variant("hybrid_naive_step", ("generate", False, False, False), args.naive_reps, 1, **hybrid)
    trainer._sample = real_sample
    trainer.sampler = None
    gc.collect()
    result["sft_peak_gb"] = result["sft_step_peak_gb"]
    result["hybrid_peak_gb"] = result["hybrid_step_peak_gb"]

    # Decoding alone, same prompts.
    tok = processor.tokenizer
    prompts = prompts_from_sft_batch(device_batch, tok.pad_token_id)
    base = trainer.model
    gen_inputs = prompts.model_inputs()
    base.eval()
    if not (args.skip_decode or args.skip_generate):
        def generate():
            with torch.no_grad(), sampling_autocast(trainer.args, prompts.input_ids.device):
                base.generate(**gen_inputs, max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens)

        med, _, _ = _timed(generate, 2, 1)
        result["generate_ms_per_token"] = round(1000 * med / args.new_tokens, 2)
    for name, (merged, compiled) in ({} if args.skip_decode else DECODE_VARIANTS).items():
        try:
            decode_timing(result, name, StaticSampler(merged_weights=merged, compile=compiled), base, prompts, tok, trainer.args, args)
        except Exception as err:  # noqa: BLE001
            result.setdefault("errors", {})[name] = repr(err)
        gc.collect()
        save()
    default_decode = {(False, False): "sampler_eager", (False, True): "sampler_compiled", (True, False): "sampler_merged_eager",
                      (True, True): "sampler_merged_compiled"}[default_lever[1:3]]
    if f"{default_decode}_ms_per_token" in result:
        result["sampler_ms_per_token"] = result[f"{default_decode}_ms_per_token"]
    if not args.skip_decode and "speculative" in args.levers:
        try:
            speculative_full_acceptance(result, base, prompts, tok, trainer.args, args, performance.speculative_block)
        except Exception as err:  # noqa: BLE001
            result.setdefault("errors", {})["speculative_full_acceptance"] = repr(err)
        save()
    base.train()
    result["decode_floor_ms_per_token"] = decode_floor_ms(base, args.batch)
    result["ratios"], result["targets_met"] = ratios_and_targets(result, args.lora16)
    save()
    print(json.dumps({k: result[k] for k in ("ratios", "targets_met")}, indent=1))
    return result


LEVER_FIELDS = ("sampler", "merged_weights", "compiled", "packed")
LEVERS = {  # each speed lever's step: (sampler, merged sampling weights, torch.compile, shared-prefix packing)
    "eager": ("static", False, False, False),  # the static sampler's CUDA graph alone
    "compiled": ("static", False, True, False),
    "packed": ("static", False, False, True),
    "merged": ("static", True, False, False),
    "merged_packed": ("static", True, False, True),
    "merged_packed_compiled": ("static", True, True, True),
    "speculative": ("speculative", True, True, True),  # random weights: no draft accepted, its worst case
}
DECODE_VARIANTS = {  # decoding alone: (merged sampling weights, torch.compile), CUDA graph in all
    "sampler_eager": (False, False),
    "sampler_compiled": (False, True),
    "sampler_merged_eager": (True, False),
    "sampler_merged_compiled": (True, True),
}


def decode_timing(result: dict, name: str, sampler, model, prompts, tok, config, args) -> None:
    """``{name}_ms_per_token`` of ``sampler`` on ``prompts`` (median of ``args.reps`` calls after
    two warm-up calls, the first one's seconds as ``{name}_first_call_s``: compilation and
    capture), whether every step ran compiled and from a graph, and its greedy tokens'
    agreement with ``generate``."""
    from trl_ground.sampling.decoding import sampling_autocast
    from trl_ground.sampling.generation import sample_answers

    def sample():
        with sampling_autocast(config, prompts.input_ids.device):
            sampler.sample(model, prompts, tok, k=1, max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens)

    start = time.perf_counter()
    sample()
    _sync()
    result[f"{name}_first_call_s"] = round(time.perf_counter() - start, 2)
    med, _, _ = _timed(sample, args.reps, 1)
    result[f"{name}_ms_per_token"] = round(1000 * med / args.new_tokens, 3)
    states = list(sampler.graphs.states.values())
    result[f"{name}_cuda_graph"] = bool(states) and all(st.graph is not None for st in states)
    if sampler.graphs.compile:
        result[f"{name}_compiled"] = not sampler.graphs.compile_failed
    with sampling_autocast(config, prompts.input_ids.device):
        ref = sample_answers(model, prompts, tok, k=1, max_new_tokens=16, do_sample=False)
        fast = sampler.sample(model, prompts, tok, k=1, max_new_tokens=16, do_sample=False)
    n = min(ref.completion_ids.shape[1], fast.completion_ids.shape[1])
    same = ref.completion_ids[:, :n] == fast.completion_ids[:, :n]
    result[f"{name}_greedy_token_agreement"] = round(float(same.float().mean()), 4)
    result[f"{name}_greedy_rows_identical"] = int(same.all(dim=1).sum())


def speculative_full_acceptance(result: dict, model, prompts, tok, config, args, block: int) -> None:
    """The speculative sampler's best case on this model: greedy decoding drafted from the
    model's own greedy answers (the static sampler's: in bf16 a near tie can still reject a
    draft, hence the acceptance recorded), merged weights and compiled, as
    ``speculative_full_acceptance_ms_per_token``, and the call's time per decode step
    (``speculative_call_ms_per_decode_step``, prefill included) for predicting other
    acceptance rates."""
    from trl_ground.sampling.decoding import sampling_autocast
    from trl_ground.sampling.speculative import SpeculativeSampler
    from trl_ground.sampling.static import StaticSampler

    n = args.new_tokens
    with sampling_autocast(config, prompts.input_ids.device):
        own = StaticSampler(merged_weights=True, compile=True).sample(model, prompts, tok, k=1, max_new_tokens=n, min_new_tokens=n,
                                                                      do_sample=False)
    targets = [row.tolist() for row in own.completion_ids]
    sampler = SpeculativeSampler(block=block, merged_weights=True, compile=True)

    def sample():
        with sampling_autocast(config, prompts.input_ids.device):
            sampler.sample(model, prompts, tok, k=1, max_new_tokens=n, min_new_tokens=n, do_sample=False, targets=targets)

    med, _, _ = _timed(sample, args.reps, 2)
    stats = sampler.last_stats
    result["speculative_full_acceptance_ms_per_token"] = round(1000 * med / n, 3)
    result["speculative_full_acceptance_tokens_per_step"] = round(stats.tokens_per_step, 3)
    result["speculative_full_acceptance_draft_acceptance"] = round(stats.acceptance, 4)
    result["speculative_call_ms_per_decode_step"] = round(1000 * med / stats.decode_steps, 3)
    result["speculative_block"] = block


HBM_BYTES_PER_S = 4.8e12  # H200 specification (measured copies reach ~4.3e12)


def decode_floor_ms(model, rows: int) -> dict:
    """Milliseconds per token under which a decode step of ``rows`` rows cannot go on an
    H200: every weight of the language model read once per token (embedding rows excluded)
    at the memory bandwidth, as stored (``stored``: 4-bit codes + scales for NF4) and as bf16
    matrices (``merged_bf16``, what merged sampling weights read). The KV cache (~0.1 GB at
    448 px, batch 8) is left out."""
    stored = dense = 0
    for name, param in model.named_parameters():
        if "visual" in name or "embed_tokens" in name or "lora_" in name:
            continue
        stored += param.numel() * param.element_size()
        state = getattr(param, "quant_state", None)
        dense += (state.shape.numel() if state is not None else param.numel()) * 2
    return {"stored": round(1000 * stored / HBM_BYTES_PER_S, 2), "merged_bf16": round(1000 * dense / HBM_BYTES_PER_S, 2), "rows": rows}


def ratios_and_targets(result: dict, lora16: bool) -> tuple[dict, dict]:
    """The steps' ratios to SFT (same run), ``generate``'s time per token over each sampler's,
    and whether each target holds for what this run measured: the default hybrid step (and
    the best variant) <= 2x SFT, the default sampler >= 15x ``generate`` per token, the default
    hybrid step's peak <= 16 GB (QLoRA) or <= SFT + 20 GB (16-bit LoRA)."""
    sft = result["sft_step_s"]
    steps = {name[: -len("_s")]: value for name, value in result.items()
             if name.startswith("hybrid_") and name.endswith("_step_s") or name == "hybrid_step_k4_s"}
    ratios = {name.replace("_step", "") + "_over_sft": round(value / sft, 3) for name, value in steps.items()}
    for name in ("sampler", *DECODE_VARIANTS, "speculative_full_acceptance"):
        if "generate_ms_per_token" in result and f"{name}_ms_per_token" in result:
            ratios[f"generate_over_{name}_per_token"] = round(result["generate_ms_per_token"] / result[f"{name}_ms_per_token"], 2)
    targets = {}  # only what this run measured
    one_answer = [value for name, value in steps.items() if "k4" not in name and "naive" not in name]
    if one_answer:
        targets["hybrid_over_sft<=2.0 (best variant)"] = min(one_answer) / sft <= 2.0
    if "hybrid_over_sft" in ratios:
        targets["hybrid_over_sft<=2.0 (default settings)"] = ratios["hybrid_over_sft"] <= 2.0
    if "generate_over_sampler_per_token" in ratios:
        targets["generate_over_sampler>=15 (default sampler)"] = ratios["generate_over_sampler_per_token"] >= 15
    if "hybrid_step_peak_gb" in result:
        if lora16:
            targets["hybrid_step_peak<=sft+20GB"] = result["hybrid_step_peak_gb"] <= result["sft_step_peak_gb"] + 20
        else:
            targets["hybrid_peak_gb<=16"] = result["hybrid_step_peak_gb"] <= 16
    return ratios, targets


def combine_runs(qlora: list[str], lora16: list[str], crowded: list[str]) -> dict:
    """The committed figures: every run under ``runs`` / ``lora16_runs`` / ``crowded``, the
    top-level fields from the worse QLoRA run and ``lora16`` from the worse 16-bit run
    (worse: the higher default hybrid / SFT ratio), with each run's SFT time and ratio in
    ``ratio_spread``."""
    def load(paths, lora16=False):
        runs = [json.loads(Path(p).read_text()) for p in paths]
        for run in runs:  # recomputed: a run cut by a time limit has no summary
            run["ratios"], run["targets_met"] = ratios_and_targets(run, lora16)
        return runs

    # a run cut before its hybrid step counts as the best, so that a complete run is on top
    worse = lambda runs: max(runs, key=lambda r: r.get("hybrid_step_s", 0.0) / r["sft_step_s"])  # noqa: E731
    spread = lambda runs: [{"date": r["date"], "sft_step_s": r["sft_step_s"], **r["ratios"]} for r in runs]  # noqa: E731
    summary = lambda run: {k: v for k, v in run.items() if k not in ("all_times_s",)}  # noqa: E731
    runs = load(qlora)
    result = {**summary(worse(runs)), "worse_of": len(runs), "ratio_spread": spread(runs)}
    if lora16:
        l16 = load(lora16, lora16=True)
        result["lora16"] = {**summary(worse(l16)), "worse_of": len(l16), "ratio_spread": spread(l16)}
        result["lora16_runs"] = l16
    if crowded:
        result["crowded"] = load(crowded)
    result["runs"] = runs
    return result


main = benchmark_command(run, scratch=True)


if __name__ == "__main__":
    sys.exit(main())
