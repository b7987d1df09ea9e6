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

The step, in order: the rollout is collected once (sample, score, ``A_it``, ``keep_i``:
:mod:`trl_ground.loss.rollout`, on the CPU); one forward pass gives ``lm_loss`` and ``logp_it``
(:mod:`trl_ground.loss.fused_pass`); the pure ``grounding_loss(rollout, logp)`` adds the rest
(:mod:`trl_ground.loss.policy_gradient`). The surrogate is 0 in value, so the logged value is the
cost itself, and its gradient is REINFORCE with a baseline: it lowers the probability of
answers that cost more than their baseline. With box-level credit (``credit="box"``) the
tokens of each box carry that box's own credit instead of the answer's. ``shuffle_advantages`` permutes the advantage rows among the answers: a benchmark
control, not a training option. With ``grounding_gradient="none"`` the terms are added as
constants, the reference script's literal behaviour, whose gradient is plain SFT's.
"""

from __future__ import annotations

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

from ..config.training import resolve_learning_rate
from ..data.collator import GROUNDING_KEYS
from ..loss.fused_pass import fused_sft_and_answers, spatial_merge_size_of
from ..loss.policy_gradient import PolicyLossSettings, PromptTypeBaselines, RunningBaseline, grounding_loss
from ..loss.rollout import CreditSettings, Rollout, assign_advantages, rollout_metrics, score_rollout, split_metrics
from ..sampling.batches import prompts_from_sft_batch, sft_answer_ids, sft_prompt_lengths
from ..sampling.decoding import sampling_autocast, sampling_dtype
from ..sampling.samplers import make_sampler
from .export import CheckpointStaging
from .merged_weights_choice import choose_merged_weights
from .model_card import ModelCardMixin

__all__ = ["GROUNDING_STATE_FILE", "GroundingSFTTrainer"]

GROUNDING_STATE_FILE = "grounding_state.json"

logger = logging.getLogger(__name__)


class GroundingSFTTrainer(ModelCardMixin, SFTTrainer):
    """``SFTTrainer`` whose loss adds grounding terms measured on the model's own answers.

    Args:
        scoring: how answers are scored (:class:`rewards.ScoringSettings`; default: the defaults).
        *args, **kwargs: those of ``trl.SFTTrainer``; ``args`` a
            :class:`~trl_ground.config.GroundingSFTConfig`, the dataset from
            :func:`trl_ground.data.dataset.build_dataset` and the collator
            :class:`~trl_ground.data.collator.GroundingCollator`.

    Attributes:
        sampler: the run's :class:`~trl_ground.sampling.samplers.Sampler`, chosen once.
        sampler_merged_weights: whether it samples with merged LoRA weights
            (``performance.sampler_merged_weights`` resolved, ``"auto"`` by its memory rule).

    Logs ``lm_loss`` and the metrics of :func:`trl_ground.loss.rollout.rollout_metrics`.
    """

    def __init__(self, *args, scoring: ScoringSettings | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.scoring = scoring if scoring is not None else ScoringSettings()
        resolve_learning_rate(self.args, self.model)  # a config built in Python: the default that depends on LoRA
        performance = self.args.performance
        self.baselines = PromptTypeBaselines.with_momentum(self.args.baseline_momentum)
        self._shuffle_generator = torch.Generator().manual_seed(self.args.seed)  # shuffle_advantages only
        self._checkpoint_staging = CheckpointStaging()
        self._spatial_merge_size = spatial_merge_size_of(self.model)
        merged = self._choose_merged_weights()
        self.sampler = make_sampler(performance.sampler, parameters_move=self._parameters_move(), merged_weights=merged,
                                    compile=performance.sampler_compile, speculative_block=performance.speculative_block)
        # what this run samples with ("auto" resolved; off where make_sampler fell back to generate)
        self.sampler_merged_weights = bool(getattr(self.sampler, "merged_weights", False))
        policy_gradient = self.args.grounding_loss and self.args.grounding_gradient == "policy_gradient"
        if policy_gradient and (unsupported := self._loss_settings_the_fused_pass_lacks()):
            raise ValueError(
                f"the grounding loss's policy gradient computes TRL's default SFT loss in its own forward pass and cannot "
                f"combine with {unsupported}; turn that off, or train without the grounding loss (--grounding-loss false)"
            )
        attention = getattr(self.model.config, "_attn_implementation", "sdpa")
        if performance.pack_samples and attention != "sdpa":
            raise ValueError(f"pack_samples needs attn_implementation='sdpa' (its block mask is 4D); this model uses {attention!r}")
        self._warn_fallbacks()

    def _choose_merged_weights(self) -> bool:
        """``performance.sampler_merged_weights`` resolved for this model where it is now
        (:func:`~trl_ground.train.merged_weights_choice.choose_merged_weights`), said in one info
        line. The reserve counts the rows of the step's largest forward pass: the fused pass's
        ``B x (1 + K)``, or an evaluation batch."""
        args = self.args
        device = next(self.model.parameters()).device
        with sampling_autocast(args, device, self.model):
            dtype = sampling_dtype(self.model, device)
        rows = args.per_device_train_batch_size * (1 + args.num_generations)
        if self.eval_dataset is not None and args.eval_strategy != "no":
            rows = max(rows, args.per_device_eval_batch_size)
        choice = choose_merged_weights(
            self.model, args.performance, dtype=dtype, rows=rows, parameters_move=self._parameters_move(), samples=args.grounding_loss
        )
        logger.info("%s", choice)
        self.merged_weights_choice = choice  # the job prints it: what a run decided, and why
        return choice.on

    def _warn_fallbacks(self) -> None:
        """One warning line for each option that this run cannot honour, naming what is used
        instead (the sampler's own fallback under FSDP / ZeRO-3 is logged by ``make_sampler``)."""
        args = self.args
        if args.grounding_loss and args.credit == "box" and args.grounding_gradient == "policy_gradient" and self.scoring.cost != "dense":
            logger.warning(
                f"credit='box' falls back to 'sequence': box credit splits the dense score among the boxes, "
                f"and cost is {self.scoring.cost!r} (set cost: dense, or credit: sequence to silence this)"
            )

    # ---- loss -------------------------------------------------------------------------
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """Training steps that sample: the rollout is collected (sampled, scored, advantages
        assigned), then one forward pass gives the SFT loss and the answers' log-probabilities
        (:func:`~trl_ground.loss.fused_pass.fused_sft_and_answers`), and
        :func:`~trl_ground.loss.policy_gradient.grounding_loss` adds the grounding term (with
        ``return_outputs`` the outputs are None: the fused pass's rows are not the batch's).
        The literal mode (``grounding_gradient="none"``) adds the cost to ``SFTTrainer``'s loss
        as a constant: it needs no log-probabilities. Other steps, and evaluation, are
        ``SFTTrainer``'s (evaluation logs a greedy rollout's metrics)."""
        truth = {k: inputs.pop(k) for k in GROUNDING_KEYS}
        mode = "train" if self.model.training else "eval"
        sampling = mode == "train" and self._samples_this_step()
        if sampling and self.args.grounding_gradient == "policy_gradient":
            prompt_lengths = sft_prompt_lengths(inputs)  # once: the prompts cut out to sample, the packed rows
            rollout = self._collect_rollout(model, inputs, truth, mode, prompt_lengths)
            fused = fused_sft_and_answers(
                model, inputs, rollout.samples, self.processing_class.tokenizer.pad_token_id, num_items_in_batch,
                self._process_factor(), self._spatial_merge_size, pack=self.args.performance.pack_samples, k=rollout.k,
                prompt_lengths=prompt_lengths,
            )
            self._log_sft_metrics(fused, inputs)
            self._log_lm_loss(mode, fused.lm_loss, inputs, num_items_in_batch)
            grounding, metrics = grounding_loss(rollout, fused.answer_logp, self._policy_loss_settings())
            if metrics:
                self._log_means(mode, metrics)
            loss = fused.lm_loss + grounding * self._grounding_scale(num_items_in_batch)
            return (loss, None) if return_outputs else loss
        result = super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)
        lm_loss = result[0] if return_outputs else result
        self._log_lm_loss(mode, lm_loss, inputs, num_items_in_batch)
        if sampling:  # the literal mode: the cost added as a constant, SFT's gradient
            rollout = self._collect_rollout(model, inputs, truth, mode)
            grounding, _ = grounding_loss(rollout, None, self._policy_loss_settings())
            loss = lm_loss + grounding * self._grounding_scale(num_items_in_batch)
            return (loss, result[1]) if return_outputs else loss
        if mode == "eval" and self.args.grounding_loss:
            self._collect_rollout(model, inputs, truth, mode)
        return result

    def _process_factor(self) -> int:
        """What TRL multiplies its loss by under ``average_tokens_across_devices``."""
        return self.accelerator.num_processes // self.get_tp_size() if self.args.average_tokens_across_devices else 1

    def _policy_loss_settings(self) -> PolicyLossSettings:
        args = self.args
        return PolicyLossSettings(
            policy_gradient=args.grounding_gradient == "policy_gradient",
            weight=args.policy_loss_weight,
            loss_type=args.policy_loss_type,
            max_new_tokens=args.max_completion_length,
            importance_clip_max=args.vllm_importance_sampling_clip_max,
            temperature=args.temperature,
        )

    def _credit_settings(self) -> CreditSettings:
        args = self.args
        return CreditSettings(
            box_credit=args.credit == "box" and self.scoring.cost == "dense",
            dense_norm=self.scoring.dense_norm,
            drop_flat_groups=args.drop_flat_groups,
            shuffle=args.shuffle_advantages,
            generator=self._shuffle_generator,
        )

    def _update_running(self, updates: list[tuple[RunningBaseline, torch.Tensor]]) -> None:
        """Update each running baseline with the mean of its values over every process's (the
        running baselines must be the same on every rank: one rank saves them, every rank
        restores them); no update of one for which no process has a value."""
        device = self.accelerator.device
        totals = torch.stack([torch.stack([v.float().sum(), torch.tensor(float(v.numel()))]) for _, v in updates]).to(device)
        if self.accelerator.num_processes > 1:
            totals = self.accelerator.reduce(totals, reduction="sum")
        for (baseline, _), (total, count) in zip(updates, totals.tolist()):
            if count > 0:
                baseline.update(torch.tensor(total / count))

    def _samples_this_step(self) -> bool:
        return self.args.grounding_loss and self.state.global_step % self.args.sample_every_n_steps == 0

    def _collect_rollout(self, model, inputs, truth, mode: str, prompt_lengths: torch.Tensor | None = None) -> Rollout:
        """Sample K answers per prompt (greedy, K = 1 in eval), score them, and in training
        assign their advantages (then update the K = 1 running baselines); log the metrics.
        ``prompt_lengths``: ``(B,)`` the prompt lengths of the SFT batch ``inputs``
        (:func:`~trl_ground.sampling.batches.sft_prompt_lengths`), computed when None."""
        args = self.args
        tokenizer = self.processing_class.tokenizer
        k = args.num_generations if mode == "train" else 1
        prompts = prompts_from_sft_batch(inputs, tokenizer.pad_token_id, prompt_lengths)
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
                targets=sft_answer_ids(inputs) if self.sampler.uses_targets else None,
            )
        rollout = score_rollout(samples, truth["gt_boxes"], truth["query_class"], k, self.scoring, time.perf_counter() - start)
        if mode == "train":
            if args.grounding_gradient == "policy_gradient":
                running = self.baselines.per_answer(rollout.cost, rollout.has_boxes) if k == 1 else None
                assign_advantages(rollout, running, self._credit_settings(), tokenizer)
            if k == 1:
                has = rollout.has_boxes
                self._update_running([(self.baselines.with_boxes, rollout.cost[has]), (self.baselines.without_boxes, rollout.cost[~has])])
        self._log_means(mode, {**rollout_metrics(rollout), **split_metrics(rollout), **self._sampler_metrics()})
        return rollout

    def _sampler_metrics(self) -> dict:
        """What the speculative sampler's latest call did: the fraction of draft tokens
        accepted and the answer tokens a row gained per decode step (plain decoding: 1)."""
        stats = getattr(self.sampler, "last_stats", None)
        if stats is None or not stats.row_steps:
            return {}
        return {"sampling/draft_acceptance": stats.acceptance, "sampling/tokens_per_step": stats.tokens_per_step}

    def _sample(self, model, prompts, tokenizer, **kwargs):
        """``self.sampler``'s answers (:class:`trl_ground.sampling.samplers.Sampler`) in the sampling precision."""
        with sampling_autocast(self.args, prompts.input_ids.device, model):
            return self.sampler.sample(model, prompts, tokenizer, **kwargs)

    def _parameters_move(self) -> bool:
        """Whether the weights are gathered per call (FSDP or ZeRO-3): :func:`~trl_ground.sampling.samplers.make_sampler`
        then gives the generate sampler."""
        plugin = getattr(self.accelerator.state, "deepspeed_plugin", None)
        return bool(self.is_fsdp_enabled or (plugin is not None and getattr(plugin, "zero_stage", 0) == 3))

    def _loss_settings_the_fused_pass_lacks(self) -> str | None:
        """The fused pass mirrors ``SFTTrainer``'s default loss (see :mod:`trl_ground.loss.fused_pass`):
        the first setting that would change that loss, or None."""
        if self.compute_loss_func is not None:
            return "a compute_loss_func"
        if self.label_smoother is not None:
            return f"label_smoothing_factor={self.args.label_smoothing_factor}"
        if self.args.loss_type != "nll":
            return f"loss_type={self.args.loss_type!r}"
        if self.aux_loss_enabled:
            return "the MoE router's auxiliary loss (output_router_logits)"
        return None

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
