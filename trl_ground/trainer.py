"""``GroundingSFTTrainer``: TRL's ``SFTTrainer`` plus grounding terms on sampled answers.

For a batch of B prompts with ground truth, on sampling steps (R = B * K answers)::

    lm_loss    = SFTTrainer's loss on the answer tokens
    samples    = K answers per prompt from the current model (KV cache, no gradient)
    cost_i     = ScoringSettings.answer_cost of answer i: 1 - dense score by default (rewards/)
    A_i        = cost_i - baseline_i        (mean cost of the other samples of the same
                                             prompt; when K = 1 a running mean of the cost,
                                             one for prompts with boxes, one for those without)
    A_it       = the advantage token t carries: A_i, or with box credit -Delta_j on the
                 tokens of box j (minus its marginal contribution to the dense score)
    keep_i     = 0 for the answers of a prompt whose K costs are all equal (drop_flat_groups)
    logp_it    = log-probability of token t of answer i (with gradient)
    surrogate  = sum_i keep_i sum_t A_it * (logp_it - stopgrad(logp_it)) / Z
                 Z = R' * max_completion_length (policy_loss_type "dr_grpo"), the kept answers'
                 tokens ("dapo"), or T_i per answer then the mean over answers ("grpo");
                 R' the kept answers
    grounding  = mean(cost_i) + policy_loss_weight * surrogate
    loss       = lm_loss + grounding

The surrogate is 0 in value, so the logged value is the cost itself, and its gradient is
REINFORCE with a baseline (:mod:`trl_ground.policy_gradient`): it lowers the probability of
answers that cost more than their baseline. With box-level credit (``credit="box"``,
:mod:`trl_ground.credit`) the tokens of each box carry that box's own credit instead of the
answer's. ``shuffle_advantages`` permutes the advantage rows among the answers: a benchmark
control, not a training option. With ``grounding_gradient="none"`` the terms are added as
constants, the reference script's literal behaviour, whose gradient is plain SFT's.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time

import torch
from transformers.trainer_utils import get_last_checkpoint, rotate_checkpoints
from trl import SFTTrainer
from trl.models import unwrap_model_for_generation

from rewards import ScoringSettings

from .batches import prompts_from_sft_batch
from .collator import GROUNDING_KEYS
from .config.training import resolve_learning_rate
from .credit import token_advantages
from .export import CheckpointStaging
from .fused_pass import answer_logprobs, fused_sft_and_answers, spatial_merge_size_of
from .generation import sample_answers
from .model_card import ModelCardMixin
from .policy_gradient import (
    PromptTypeBaselines,
    RunningBaseline,
    advantages,
    flat_groups,
    permute_answers,
    policy_surrogate,
    truncated_importance_weights,
)
from .rollout import Rollout, answers_with_boxes, rollout_metrics, score_rollout, split_metrics
from .sampling_weights import mergeable_lora_linears
from .static_sampler import StaticSampler

__all__ = ["GROUNDING_STATE_FILE", "GroundingSFTTrainer", "sampling_autocast"]

GROUNDING_STATE_FILE = "grounding_state.json"

logger = logging.getLogger(__name__)


def sampling_autocast(args, device, model=None):
    """Mixed precision for sampling. The unwrapped model has no autocast wrapper, and without
    one a QLoRA model (whose norms k-bit preparation keeps in fp32) would decode in fp32.
    The autocast cache is off: casts made under ``no_grad`` (and inside a CUDA graph) must
    never be reused by the training forward.

    A model whose weights are fp32 (full fine-tuning's master weights, ``model`` given)
    samples in fp32: under bf16 autocast, sampling the learning benchmark's trained fp32
    model inside ``Trainer.train()`` gave NaN logits at the first sampling step on an H200,
    while the same sampler and model under the same autocast outside the training step did
    not (cause not established; ``benchmarks/device/diagnose_autocast_nan.py`` reproduces
    it). The fp32 path is the one tested against ``generate``."""
    dtype = torch.bfloat16 if args.bf16 else torch.float16 if args.fp16 else None
    if dtype is None or device.type != "cuda" or (model is not None and _weights_dtype(model) == torch.float32):
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype, cache_enabled=False)


def _weights_dtype(model) -> torch.dtype:
    """The dtype of the model's input embedding: fp32 for full fine-tuning, the base's
    (bf16) with LoRA, whatever dtype the adapters have."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.get_input_embeddings().weight.dtype


class GroundingSFTTrainer(ModelCardMixin, SFTTrainer):
    """``SFTTrainer`` whose loss adds grounding terms measured on the model's own answers.

    Args:
        scoring: how answers are scored (:class:`rewards.ScoringSettings`; default: the defaults).
        *args, **kwargs: those of ``trl.SFTTrainer``; ``args`` a
            :class:`~trl_ground.config.GroundingSFTConfig`, the dataset from
            :func:`trl_ground.data.build_dataset` and the collator
            :class:`~trl_ground.collator.GroundingCollator`.

    Logs ``lm_loss`` and the metrics of :func:`trl_ground.rollout.rollout_metrics`.
    """

    def __init__(self, *args, scoring: ScoringSettings | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.scoring = scoring if scoring is not None else ScoringSettings()
        resolve_learning_rate(self.args, self.model)  # a config built in Python: the default that depends on LoRA
        performance = self.args.performance
        self.baselines = PromptTypeBaselines.with_momentum(self.args.baseline_momentum)
        self._shuffle_generator = torch.Generator().manual_seed(self.args.seed)  # shuffle_advantages only
        self._static_sampler = StaticSampler(merged_weights=performance.sampler_merged_weights)
        self._checkpoint_staging = CheckpointStaging()
        self._spatial_merge_size = spatial_merge_size_of(self.model)
        if performance.sampler_merged_weights:
            mergeable_lora_linears(self.model)  # refuses a model without LoRA linears now, not at the first sampling step
        attention = getattr(self.model.config, "_attn_implementation", "sdpa")
        if performance.pack_samples and attention != "sdpa":
            raise ValueError(f"pack_samples needs attn_implementation='sdpa' (its block mask is 4D); this model uses {attention!r}")
        self._warn_fallbacks()

    def _warn_fallbacks(self) -> None:
        """One warning line for each option that this run cannot honour, naming what is used instead."""
        args, performance = self.args, self.args.performance
        if not args.grounding_loss:
            return
        if args.credit == "box" and args.grounding_gradient == "policy_gradient" and self.scoring.cost != "dense":
            logger.warning(
                f"credit='box' falls back to 'sequence': box credit splits the dense score among the boxes, "
                f"and cost is {self.scoring.cost!r} (set cost: dense, or credit: sequence to silence this)"
            )
        if self._parameters_move():
            used = "sampler='generate'" + (" without merged weights" if performance.sampler_merged_weights else "")
            if performance.sampler == "static":
                logger.warning(
                    f"sampler='static' falls back to {used}: under FSDP / ZeRO-3 the weights are gathered per call, "
                    "and a CUDA graph keeps their addresses"
                )
        if performance.fuse_logprob_pass and args.grounding_gradient == "policy_gradient" and not self._can_fuse():
            reasons = [
                f"loss_type={args.loss_type!r}" if args.loss_type != "nll" else "",
                "a compute_loss_func" if self.compute_loss_func is not None else "",
                "label smoothing" if self.label_smoother is not None else "",
                "an auxiliary loss" if self.aux_loss_enabled else "",
            ]
            packed = " (so pack_samples, which packs that pass, is not used either)" if performance.pack_samples else ""
            logger.warning(
                f"fuse_logprob_pass falls back to two forward passes{packed}: the fused pass computes SFTTrainer's "
                f"plain NLL loss only, and this run has {', '.join(r for r in reasons if r)}"
            )

    # ---- loss -------------------------------------------------------------------------
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        truth = {k: inputs.pop(k) for k in GROUNDING_KEYS}
        mode = "train" if self.model.training else "eval"
        sampling = self._samples_this_step(mode)
        if mode == "train" and sampling and not return_outputs and self._can_fuse():
            return self._fused_loss(model, inputs, truth, num_items_in_batch)
        result = super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)
        lm_loss = result[0] if return_outputs else result
        self._log_lm_loss(mode, lm_loss, inputs, num_items_in_batch)
        if not sampling:
            return result
        rollout = self._rollout(model, inputs, truth, mode)
        if mode == "eval":
            return result
        answer_logp = None
        if self.args.grounding_gradient == "policy_gradient":
            answer_logp = answer_logprobs(model, rollout.samples, self._spatial_merge_size)
        loss = lm_loss + self._grounding_term(rollout, answer_logp, num_items_in_batch)
        return (loss, result[1]) if return_outputs else loss

    def _fused_loss(self, model, inputs, truth, num_items_in_batch):
        """``lm_loss + grounding`` with the answers' log-probabilities from the same forward
        pass as the SFT rows (:mod:`trl_ground.fused_pass`)."""
        rollout = self._rollout(model, inputs, truth, "train")
        average = self.args.average_tokens_across_devices
        factor = self.accelerator.num_processes // self.get_tp_size() if average else 1
        pad = self.processing_class.tokenizer.pad_token_id
        fused = fused_sft_and_answers(
            model, inputs, rollout.samples, pad, num_items_in_batch, factor, self._spatial_merge_size,
            pack=self.args.performance.pack_samples, k=rollout.k,
        )
        self._log_sft_metrics(fused, inputs)
        self._log_lm_loss("train", fused.lm_loss, inputs, num_items_in_batch)
        return fused.lm_loss + self._grounding_term(rollout, fused.answer_logp, num_items_in_batch)

    def _grounding_term(self, rollout: Rollout, answer_logp: torch.Tensor | None, num_items_in_batch) -> torch.Tensor:
        """``mean(cost)`` plus, with the policy gradient, ``policy_loss_weight`` times the
        surrogate (value 0); scaled for gradient accumulation like the LM loss. Updates the
        K = 1 running baselines."""
        grounding = rollout.cost.mean()
        has_boxes = torch.as_tensor(answers_with_boxes(rollout), device=rollout.cost.device)
        if answer_logp is not None:
            grounding = grounding + self.args.policy_loss_weight * self._policy_surrogate(rollout, answer_logp, has_boxes)
        if rollout.k == 1:
            self._update_running(
                [(self.baselines.with_boxes, rollout.cost[has_boxes]), (self.baselines.without_boxes, rollout.cost[~has_boxes])]
            )
        return grounding * self._grounding_scale(num_items_in_batch)

    def _policy_surrogate(self, rollout: Rollout, answer_logp: torch.Tensor, has_boxes: torch.Tensor) -> torch.Tensor:
        """The REINFORCE surrogate of the rollout (value 0): its token advantages, without the
        groups that have no spread (``drop_flat_groups``), permuted among the answers with
        ``shuffle_advantages``, weighted for merged-weight samples."""
        args, samples = self.args, rollout.samples
        adv = self._token_advantages(rollout, has_boxes)
        keep = torch.ones_like(has_boxes)
        if args.drop_flat_groups and rollout.k > 1:
            keep = ~flat_groups(rollout.cost, rollout.k).repeat_interleave(rollout.k)
            adv = adv * keep.view(-1, *[1] * (adv.dim() - 1))
        if args.shuffle_advantages:
            adv, keep = permute_answers(adv, keep, self._shuffle_generator)
        if samples.sampler_logprobs is not None:
            adv = (adv if adv.dim() == 2 else adv.unsqueeze(1)) * self._importance_weights(samples, answer_logp)
        return policy_surrogate(
            adv, answer_logp, samples.completion_mask, loss_type=args.policy_loss_type, max_new_tokens=args.max_completion_length, keep=keep
        )

    def _importance_weights(self, samples, answer_logp: torch.Tensor) -> torch.Tensor:
        """``(R, T)`` truncated ``p_train / p_sampler`` of samples drawn with merged sampling
        weights; logs how far the two models are apart on the sampled tokens."""
        weights = truncated_importance_weights(
            answer_logp, samples.sampler_logprobs, self.args.vllm_importance_sampling_clip_max, self.args.temperature
        )
        mask = samples.completion_mask.bool()
        gap = (answer_logp.detach().float() - samples.sampler_logprobs.float())[mask]  # empty: NaN means, not logged
        self._log_means("train", {
            "sampling/logp_gap_abs_mean": float(gap.abs().mean()),
            "sampling/importance_weight_mean": float(weights[mask].mean()),
            "sampling/importance_weight_clipped": float((weights[mask] >= self.args.vllm_importance_sampling_clip_max).float().mean()),
        })
        return weights

    def _update_running(self, updates: list[tuple[RunningBaseline, torch.Tensor]]) -> None:
        """Update each running baseline with the mean of its values over every process's (the
        running baselines must be the same on every rank: one rank saves them, every rank
        restores them); no update of one for which no process has a value."""
        device = updates[0][1].device
        totals = torch.stack([torch.stack([v.float().sum(), torch.tensor(float(v.numel()), device=device)]) for _, v in updates])
        if self.accelerator.num_processes > 1:
            totals = self.accelerator.reduce(totals, reduction="sum")
        for (baseline, _), (total, count) in zip(updates, totals.tolist()):
            if count > 0:
                baseline.update(torch.tensor(total / count))

    def _token_advantages(self, rollout: Rollout, has_boxes: torch.Tensor) -> torch.Tensor:
        """``(R,)`` answer advantages, or ``(R, T)`` token advantages with box-level credit
        (which needs the dense scores)."""
        running = self.baselines.per_answer(rollout.cost, has_boxes) if rollout.k == 1 else None
        adv = advantages(rollout.cost, rollout.k, running)
        if self.args.credit != "box" or self.scoring.cost != "dense":
            return adv
        samples = rollout.samples
        tokenizer, norm = self.processing_class.tokenizer, self.scoring.dense_norm
        token_adv, located = token_advantages(
            rollout.scored, samples.texts, adv, samples.completion_ids, samples.completion_mask, tokenizer, norm
        )
        self._log_means("train", {"box_credit_fraction": located})
        return token_adv.to(rollout.cost.device)

    def _samples_this_step(self, mode: str) -> bool:
        if not self.args.grounding_loss:
            return False
        return mode == "eval" or self.state.global_step % self.args.sample_every_n_steps == 0

    def _rollout(self, model, inputs, truth, mode: str) -> Rollout:
        """Sample K answers per prompt (greedy, K = 1 in eval), score them, log the metrics."""
        args = self.args
        tokenizer = self.processing_class.tokenizer
        k = args.num_generations if mode == "train" else 1
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
                temperature=args.temperature,
                max_new_tokens=args.max_completion_length,
                do_sample=mode == "train",
                min_new_tokens=args.sample_min_new_tokens,
            )
        rollout = score_rollout(samples, truth["gt_boxes"], truth["query_class"], k, self.scoring, time.perf_counter() - start)
        self._log_means(mode, {**rollout_metrics(rollout), **split_metrics(rollout)})
        return rollout

    def _sample(self, model, prompts, tokenizer, **kwargs):
        with sampling_autocast(self.args, prompts.input_ids.device, model):
            if self.args.performance.sampler == "static" and not self._parameters_move():
                return self._static_sampler.sample(model, prompts, tokenizer, **kwargs)
            return sample_answers(model, prompts, tokenizer, **kwargs)

    def _parameters_move(self) -> bool:
        """Under FSDP or ZeRO-3 the weights are gathered per call, so a CUDA graph (which
        keeps their addresses) cannot be reused: those runs sample with ``generate``."""
        plugin = getattr(self.accelerator.state, "deepspeed_plugin", None)
        return bool(self.is_fsdp_enabled or (plugin is not None and getattr(plugin, "zero_stage", 0) == 3))

    def _can_fuse(self) -> bool:
        """The fused pass mirrors SFTTrainer's default loss (see :mod:`trl_ground.fused_pass`);
        any other loss setting takes the two-pass route."""
        return (
            self.args.performance.fuse_logprob_pass
            and self.args.grounding_gradient == "policy_gradient"
            and self.compute_loss_func is None
            and self.label_smoother is None
            and self.args.loss_type == "nll"
            and not self.aux_loss_enabled
        )

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

    # ---- metrics ----------------------------------------------------------------------
    def _log_lm_loss(self, mode: str, lm_loss, inputs, num_items_in_batch) -> None:
        """This micro-batch's mean NLL per answer token (undoing the accumulation scaling)."""
        value = float(lm_loss.detach())
        if num_items_in_batch is not None and self.model.training:
            local_tokens = int((inputs["labels"][:, 1:] != -100).sum())
            value *= float(num_items_in_batch) / max(local_tokens, 1)
            if self.args.average_tokens_across_devices:
                value /= self.accelerator.num_processes
        self._log_means(mode, {"lm_loss": value})

    def _log_sft_metrics(self, fused, inputs) -> None:
        """TRL's ``entropy``, ``mean_token_accuracy`` and ``num_tokens`` for the SFT rows of
        the fused pass (what ``SFTTrainer.compute_loss`` logs in TRL 1.16.0)."""
        gather = self.accelerator.gather_for_metrics
        num_valid = gather(fused.sft_label_mask.sum()).sum()
        if fused.sft_entropy is not None:
            entropy = gather(fused.sft_entropy.detach().sum()).sum()
            self._metrics["train"]["entropy"].append((entropy / num_valid).item() if num_valid > 0 else 0.0)
        if fused.sft_is_top1 is not None:
            correct = gather(fused.sft_is_top1.sum()).sum()
            self._metrics["train"]["mean_token_accuracy"].append((correct / num_valid).item() if num_valid > 0 else 0.0)
        self._total_train_tokens += gather(inputs["attention_mask"].sum()).sum().item() // self._tp_size
        self._metrics["train"]["num_tokens"] = [self._total_train_tokens]

    def _log_means(self, mode: str, values: dict[str, float]) -> None:
        """Append ``values`` (averaged over processes) to the metrics TRL logs; a NaN value
        (a mean over nothing, e.g. no prompt with boxes in this batch) is left out."""
        tensor = torch.tensor([float(v) for v in values.values()], device=self.accelerator.device)
        if self.accelerator.num_processes > 1:
            tensor = self.accelerator.gather_for_metrics(tensor.unsqueeze(0)).nanmean(dim=0)
        for name, value in zip(values, tensor.tolist()):
            if not math.isnan(value):
                self._metrics[mode][name].append(value)

    # ---- checkpoints ------------------------------------------------------------------
    def _get_output_dir(self, trial) -> str:
        """The run directory, or its staging directory while a checkpoint is being written."""
        return self._checkpoint_staging.redirect(super()._get_output_dir(trial))

    def _save_checkpoint(self, model, trial):
        """Write ``checkpoint-N`` (with the grounding state) under a staging directory, then
        move it into place, so that a checkpoint is complete or absent."""
        run_dir = super()._get_output_dir(trial)
        name = f"checkpoint-{self.state.global_step}"
        with self._checkpoint_staging.staged(run_dir, name, self.args.should_save, self.accelerator.wait_for_everyone) as staged:
            super()._save_checkpoint(model, trial)
            if self.args.should_save:
                with open(os.path.join(staged, GROUNDING_STATE_FILE), "w") as f:
                    json.dump(self.baselines.state_dict(), f)
                if self._point_best_checkpoint_at(run_dir):
                    self.state.save_to_json(os.path.join(staged, "trainer_state.json"))
        if self.args.should_save:
            rotate_checkpoints(
                output_dir=run_dir,
                save_total_limit=self.args.save_total_limit,
                best_model_checkpoint=self.state.best_model_checkpoint,
                use_mtime=False,
            )

    def _point_best_checkpoint_at(self, run_dir: str) -> bool:
        """The Trainer looked for the best checkpoint in the staging directory: point
        ``state.best_model_checkpoint`` at ``run_dir`` instead (where it is, or is about to
        be). Returns whether it changed."""
        best = self.state.best_global_step
        if not best:
            return False
        path = os.path.join(run_dir, f"checkpoint-{best}")
        if path == self.state.best_model_checkpoint or not (best == self.state.global_step or os.path.isdir(path)):
            return False
        self.state.best_model_checkpoint = path
        return True

    def train(self, resume_from_checkpoint=None, *args, **kwargs):
        """``Trainer.train``, restoring the grounding state (the K = 1 running baselines) of the
        checkpoint it resumes from (``True``: the latest one in ``output_dir``)."""
        if resume_from_checkpoint is True:
            resume_from_checkpoint = get_last_checkpoint(self.args.output_dir)
            if resume_from_checkpoint is None:
                raise ValueError(f"no checkpoint to resume from in {self.args.output_dir}")
        if resume_from_checkpoint:
            state_file = os.path.join(resume_from_checkpoint, GROUNDING_STATE_FILE)
            if os.path.isfile(state_file):
                with open(state_file) as f:
                    state = json.load(f)
                self.baselines.load_state_dict(state)
        return super().train(resume_from_checkpoint, *args, **kwargs)
