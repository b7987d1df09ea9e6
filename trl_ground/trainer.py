"""``GroundingSFTTrainer``: TRL's ``SFTTrainer`` plus grounding terms on sampled answers.

For a batch of B prompts with ground truth, on sampling steps::

    lm_loss    = SFTTrainer's loss on the answer tokens
    samples    = K answers per prompt from the current model (KV cache, no gradient)
    cost_i     = a * iou_loss_i + b * fp_i + c * fn_i                 (rewards/, per sample)
    A_i        = cost_i - baseline_i        (mean cost of the other samples of the same
                                             prompt; a running mean of the cost when K = 1)
    logp_i     = mean log-probability of sample i's tokens (with gradient)
    grounding  = mean(cost_i) + mean(A_i * (logp_i - stopgrad(logp_i)))
    loss       = lm_loss + grounding

The second term of ``grounding`` is 0 in value, so the logged terms are exactly the seed's,
and its gradient is REINFORCE with a baseline: it lowers the probability of answers that
cost more than their baseline. With ``grounding_gradient="none"`` the terms are added as
constants, the seed's literal behaviour, whose gradient is plain SFT's.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time

import numpy as np
import torch
from trl import SFTTrainer
from trl.models import unwrap_model_for_generation

from rewards import score_answers

from .collator import GROUNDING_KEYS
from .fast_sampler import StaticSampler
from .sampling import completion_logprobs, concat_sft_and_samples, prompts_from_sft_batch, sample_answers

__all__ = ["GroundingSFTTrainer", "advantages"]


def sampling_autocast(args, device):
    """Mixed precision for sampling. The unwrapped model has no autocast wrapper, and without
    one a QLoRA model (whose norms k-bit preparation keeps in fp32) would decode in fp32.
    The autocast cache is off: casts made under ``no_grad`` (and inside a CUDA graph) must
    never be reused by the training forward."""
    dtype = torch.bfloat16 if args.bf16 else torch.float16 if args.fp16 else None
    if dtype is None or device.type != "cuda":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype, cache_enabled=False)


def advantages(cost: torch.Tensor, k: int, running_baseline: float | None) -> torch.Tensor:
    """``A_i = cost_i - baseline_i`` for ``cost (B*K,)`` grouped by prompt (K consecutive).

    K > 1: the baseline is the mean cost of the other samples of the same prompt.
    K = 1: the running mean ``running_baseline`` (the batch mean before there is one).
    """
    if k > 1:
        groups = cost.view(-1, k)
        others = (groups.sum(dim=1, keepdim=True) - groups) / (k - 1)
        return (groups - others).reshape(-1)
    baseline = cost.mean() if running_baseline is None else torch.as_tensor(running_baseline, dtype=cost.dtype)
    return cost - baseline


class GroundingSFTTrainer(SFTTrainer):
    """``SFTTrainer`` whose loss adds grounding terms measured on the model's own answers.

    Needs ``args`` a :class:`~trl_ground.config.GroundingSFTConfig`, a dataset from
    :func:`trl_ground.data.build_dataset` and the :class:`~trl_ground.collator.GroundingCollator`.
    Logs ``lm_loss``, ``iou_loss``, ``fp_loss``, ``fn_loss``, ``f1``, ``precision``,
    ``recall``, ``grounding_cost`` (mean) and ``grounding_cost_std``, ``sampled_tokens`` (per
    answer), ``truncated_fraction``, ``unparseable_fraction`` and ``sample_seconds``.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._running_baseline: float | None = None
        self._static_sampler = StaticSampler(nf4_kernel=self.args.sampler_nf4_kernel)

    # ---- loss -------------------------------------------------------------------------
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        truth = {k: inputs.pop(k) for k in GROUNDING_KEYS}
        mode = "train" if self.model.training else "eval"
        sampling = self._samples_this_step(mode)
        if mode == "train" and sampling and not return_outputs and self._can_fuse():
            return self._fused_loss(model, inputs, truth, num_items_in_batch)
        result = super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)
        lm_loss = result[0] if return_outputs else result
        self._metrics[mode]["lm_loss"].append(self._reduced(self._token_mean_lm_loss(lm_loss, inputs, num_items_in_batch)))
        if not sampling:
            return result
        samples, cost, k = self._sample_and_score(model, inputs, truth, mode)
        if mode == "eval":
            return result
        grounding = cost.mean()
        if self.args.grounding_gradient == "policy_gradient":
            grounding = grounding + self._policy_term(cost, k, completion_logprobs(model, samples))
        self._update_baseline(cost, k)
        loss = lm_loss + grounding * self._grounding_scale(num_items_in_batch)
        return (loss, result[1]) if return_outputs else loss

    def _samples_this_step(self, mode: str) -> bool:
        if not self.args.grounding_loss:
            return False
        return mode == "eval" or self.state.global_step % self.args.sample_every_n_steps == 0

    def _sample_and_score(self, model, inputs, truth, mode):
        """Sample K answers per prompt (greedy, K = 1 in eval), score them, log the metrics.
        Returns ``(samples, cost (R,), k)``."""
        args = self.args
        tokenizer = self.processing_class.tokenizer
        k = args.samples_per_prompt if mode == "train" else 1
        prompts = prompts_from_sft_batch(inputs, tokenizer.pad_token_id)
        start = time.perf_counter()
        # TRL's helper: unwraps DDP/FSDP, gathers ZeRO-3 parameters, pauses gradient checkpointing
        with unwrap_model_for_generation(
            model, self.accelerator, gradient_checkpointing_kwargs=args.gradient_checkpointing_kwargs
        ) as unwrapped:
            samples = self._sample(
                unwrapped,
                prompts,
                tokenizer,
                k=k,
                temperature=args.sample_temperature,
                max_new_tokens=args.sample_max_new_tokens,
                do_sample=mode == "train",
                min_new_tokens=args.sample_min_new_tokens,
            )
        sample_seconds = time.perf_counter() - start
        gts = [g for g in truth["gt_boxes"] for _ in range(k)]
        classes = [c for c in truth["query_class"] for _ in range(k)] if args.label_aware_matching else None
        scored = score_answers(samples.texts, gts, args.iou_threshold, args.match_method, query_labels=classes)
        cost = torch.tensor([s.terms.cost(*args.score_weights) for s in scored], dtype=torch.float32, device=inputs["input_ids"].device)
        self._log_grounding(mode, scored, cost, k, samples, sample_seconds)
        return samples, cost, k

    def _sample(self, model, prompts, tokenizer, **kwargs):
        with sampling_autocast(self.args, prompts.input_ids.device):
            if self.args.sampler == "static" and not self._parameters_move():
                return self._static_sampler.sample(model, prompts, tokenizer, **kwargs)
            return sample_answers(model, prompts, tokenizer, **kwargs)

    def _parameters_move(self) -> bool:
        """Under FSDP or ZeRO-3 the weights are gathered per call, so a CUDA graph (which
        keeps their addresses) cannot be reused: those runs sample with ``generate``."""
        plugin = getattr(self.accelerator.state, "deepspeed_plugin", None)
        return bool(self.is_fsdp_enabled or (plugin is not None and getattr(plugin, "zero_stage", 0) == 3))

    def _policy_term(self, cost: torch.Tensor, k: int, logp: torch.Tensor) -> torch.Tensor:
        """``mean(A_i * (logp_i - stopgrad(logp_i)))``: value 0, REINFORCE gradient."""
        adv = advantages(cost, k, self._running_baseline).to(logp.dtype)
        return (adv * (logp - logp.detach())).mean()

    def _update_baseline(self, cost: torch.Tensor, k: int) -> None:
        if k == 1:
            m, batch_mean = self.args.baseline_momentum, float(cost.mean())
            self._running_baseline = batch_mean if self._running_baseline is None else m * self._running_baseline + (1 - m) * batch_mean

    # ---- one forward for the SFT rows and the sampled rows ----------------------------
    def _can_fuse(self) -> bool:
        """The fused pass mirrors SFTTrainer's default loss (token-mean NLL through the fused
        LM head); any other loss setting takes the two-pass route."""
        return (
            self.args.fuse_logprob_pass
            and self.args.grounding_gradient == "policy_gradient"
            and self.compute_loss_func is None
            and self.label_smoother is None
            and self.args.loss_type == "nll"
            and not self.aux_loss_enabled
        )

    def _fused_loss(self, model, inputs, truth, num_items_in_batch):
        """``lm_loss + grounding`` with the answers' log-probabilities from the same forward
        pass as the SFT rows (one pass over ``B + R`` rows instead of two)."""
        samples, cost, k = self._sample_and_score(model, inputs, truth, "train")
        combined, n_sft = concat_sft_and_samples(inputs, samples, self.processing_class.tokenizer.pad_token_id)
        outputs = model(**combined, use_cache=False, fused_lm_head=True)
        sft_log_probs = outputs.log_probs[:n_sft]
        sft_mask = outputs.label_mask[:n_sft]
        denom = sft_mask.sum() if num_items_in_batch is None else num_items_in_batch
        lm_loss = -sft_log_probs.sum() / torch.as_tensor(denom).clamp(min=1)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            lm_loss = lm_loss * (self.accelerator.num_processes // self.get_tp_size())
        self._log_sft_metrics(outputs, n_sft, inputs)
        self._metrics["train"]["lm_loss"].append(self._reduced(self._token_mean_lm_loss(lm_loss, inputs, num_items_in_batch)))
        counts = samples.completion_mask.sum(dim=1).clamp(min=1).to(outputs.log_probs.dtype)
        logp = outputs.log_probs[n_sft:].sum(dim=1) / counts
        grounding = cost.mean() + self._policy_term(cost, k, logp)
        self._update_baseline(cost, k)
        return lm_loss + grounding * self._grounding_scale(num_items_in_batch)

    def _log_sft_metrics(self, outputs, n_sft: int, inputs) -> None:
        """TRL's ``entropy``, ``mean_token_accuracy`` and ``num_tokens`` for the SFT rows."""
        gather = self.accelerator.gather_for_metrics
        num_valid = gather(outputs.label_mask[:n_sft].sum()).sum()
        if outputs.entropy is not None:
            entropy = gather(outputs.entropy[:n_sft].detach().sum()).sum()
            self._metrics["train"]["entropy"].append((entropy / num_valid).item() if num_valid > 0 else 0.0)
        if outputs.is_top1 is not None:
            correct = gather(outputs.is_top1[:n_sft].sum()).sum()
            self._metrics["train"]["mean_token_accuracy"].append((correct / num_valid).item() if num_valid > 0 else 0.0)
        self._total_train_tokens += gather(inputs["attention_mask"].sum()).sum().item() // self._tp_size
        self._metrics["train"]["num_tokens"] = [self._total_train_tokens]

    def _loss_is_scaled_for_ga(self, num_items_in_batch) -> bool:
        """Whether ``Trainer.training_step`` will leave the loss undivided by the
        accumulation steps (the LM loss was normalized by ``num_items_in_batch``)."""
        if self.loss_is_scaled_for_ga is not None:
            return bool(self.loss_is_scaled_for_ga)
        return bool((self.model_accepts_loss_kwargs and num_items_in_batch is not None) or self.compute_loss_func is not None)

    def _grounding_scale(self, num_items_in_batch) -> float:
        """Per-micro-batch grounding is divided by the accumulation steps when the LM loss is
        already scaled for them, so that the optimizer step sees the mean over micro-batches."""
        return 1.0 / self.current_gradient_accumulation_steps if self._loss_is_scaled_for_ga(num_items_in_batch) else 1.0

    def _token_mean_lm_loss(self, lm_loss, inputs, num_items_in_batch) -> float:
        """This micro-batch's mean NLL per answer token, undoing the accumulation scaling."""
        value = float(lm_loss.detach())
        if num_items_in_batch is None or not self.model.training:
            return value
        local_tokens = int((inputs["labels"][:, 1:] != -100).sum())
        value *= float(num_items_in_batch) / max(local_tokens, 1)
        if self.args.average_tokens_across_devices:
            value /= self.accelerator.num_processes
        return value

    # ---- metrics ----------------------------------------------------------------------
    def _reduced(self, value: float) -> float:
        """Mean of ``value`` over processes (single process: the value)."""
        if self.accelerator.num_processes == 1:
            return value
        t = torch.tensor([value], device=self.accelerator.device)
        return float(self.accelerator.gather_for_metrics(t).mean())

    @staticmethod
    def _group_std(cost: torch.Tensor, k: int) -> float:
        """Mean over prompts of the cost's spread among their ``k`` samples (0 when k = 1):
        with no spread, the policy-gradient term has no signal."""
        return float(cost.view(-1, k).std(dim=1, unbiased=False).mean()) if k > 1 else 0.0

    def _log_grounding(self, mode, scored, cost, k, samples, sample_seconds) -> None:
        terms = [s.terms for s in scored]
        local = {
            "iou_loss": np.mean([t.iou_loss for t in terms]),
            "fp_loss": np.mean([t.fp for t in terms]),
            "fn_loss": np.mean([t.fn for t in terms]),
            "f1": np.mean([t.f1 for t in terms]),
            "precision": np.mean([t.precision for t in terms]),
            "recall": np.mean([t.recall for t in terms]),
            "grounding_cost": float(cost.mean()),
            "grounding_cost_std": float(cost.std(unbiased=False)),
            "grounding_cost_group_std": self._group_std(cost, k),
            "sampled_tokens": samples.num_tokens / max(len(terms), 1),
            "truncated_fraction": float(samples.truncated.float().mean()),
            "unparseable_fraction": np.mean([not s.parsed.valid_json and len(s.parsed) == 0 for s in scored]),
            "sample_seconds": sample_seconds,
        }
        values = torch.tensor([float(v) for v in local.values()], device=self.accelerator.device)
        if self.accelerator.num_processes > 1:
            values = self.accelerator.gather_for_metrics(values.unsqueeze(0)).mean(dim=0)
        for name, value in zip(local, values.tolist()):
            self._metrics[mode][name].append(value)

    # ---- checkpoints ------------------------------------------------------------------
    def _save_checkpoint(self, model, trial):
        """Write ``checkpoint-N`` under a staging directory, then move it into place, so a
        checkpoint is complete or absent (``resume_from_checkpoint`` never sees half of one)."""
        run_dir = self._get_output_dir(trial=trial)
        staging = os.path.join(run_dir, ".staging")
        name = f"checkpoint-{self.state.global_step}"
        original = self._get_output_dir
        self._get_output_dir = lambda trial=None: staging
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self._get_output_dir = original
        self.accelerator.wait_for_everyone()
        if self.args.should_save:
            target = os.path.join(run_dir, name)
            if os.path.exists(target):
                shutil.rmtree(target)
            os.replace(os.path.join(staging, name), target)
            shutil.rmtree(staging, ignore_errors=True)
            from transformers.trainer_utils import rotate_checkpoints

            rotate_checkpoints(
                output_dir=run_dir,
                save_total_limit=self.args.save_total_limit,
                best_model_checkpoint=self.state.best_model_checkpoint,
                use_mtime=False,
            )
        self.accelerator.wait_for_everyone()
