import re

import pytest
import torch

from rewards import ScoringSettings
from tests.helpers import REPO
from trl_ground.config import GroundingGRPOConfig, parse_args
from trl_ground.train.grpo import build_rewards, run_grpo


def grpo_args(tiny_model_dir, synthetic_data, out, *extra):
    train, _, root = synthetic_data
    return parse_args([
        "--config", str(REPO / "configs/grpo_demo.yaml"), "--model", str(tiny_model_dir), "--build-tiny-model", "false",
        "--train-json", str(train), "--img-root", str(root), "--make-synthetic-data", "0", "--output-dir", str(out),
        "--max-steps", "2", "--logging-steps", "1", "--save-steps", "2", *extra,
    ], config_class=GroundingGRPOConfig)


def test_grpo_demo_trains_two_steps_and_logs_each_reward(tiny_model_dir, synthetic_data, tmp_path):
    trainer = run_grpo(*grpo_args(tiny_model_dir, synthetic_data, tmp_path))
    logs = [r for r in trainer.state.log_history if "reward" in r]
    assert len(logs) == 2
    for name in ("grounding_reward", "format_reward"):
        assert f"rewards/{name}/mean" in logs[0] and f"rewards/{name}/std" in logs[0]
    assert (tmp_path / "final" / "adapter_model.safetensors").exists() and (tmp_path / "final_merged" / "model.safetensors").exists()


def test_rewards_follow_the_scoring_settings():
    _, _, scoring, cfg = parse_args(
        ["--rewards", "grounding", "iou", "format", "--cost", "counts", "--fp-loss-weight", "2", "--iou-threshold", "0.7"],
        config_class=GroundingGRPOConfig,
    )
    grounding, iou, fmt = build_rewards(cfg.rewards, scoring)
    assert grounding.settings == scoring == ScoringSettings(cost="counts", fp_loss_weight=2.0, iou_threshold=0.7)
    assert iou.settings.iou_threshold == 0.7 and fmt.kind == "format"
    answer = '[{"bbox_2d": [100, 100, 300, 300]}, {"bbox_2d": [600, 600, 700, 700]}]'
    assert grounding([answer], gt_boxes=[[[0.1, 0.1, 0.3, 0.3]]]) == [pytest.approx(-2.0)]  # one FP at weight 2


def test_grpo_starts_from_an_sft_adapter(tiny_model_dir, synthetic_data, tmp_path):
    from safetensors.torch import load_file

    from trl_ground.train.grpo import build_grpo_trainer
    from trl_ground.train.job import run_sft

    train, test, root = synthetic_data
    sft = run_sft(*parse_args([
        "--config", str(REPO / "configs/demo.yaml"), "--use-lora", "true", "--lora-r", "8", "--lora-alpha", "16", "--finetune-attention-modules", "true", "--lr", "0.003",
        "--model", str(tiny_model_dir), "--build-tiny-model", "false",
        "--train-json", str(train), "--eval-json", str(test), "--img-root", str(root), "--make-synthetic-data", "0", "--eval-strategy", "no",
        "--output-dir", str(tmp_path / "sft"), "--max-steps", "2",
    ]))
    saved = load_file(tmp_path / "sft" / "final" / "adapter_model.safetensors")
    trainer = build_grpo_trainer(*grpo_args(tiny_model_dir, synthetic_data, tmp_path / "grpo", "--adapter", str(tmp_path / "sft" / "final")))
    params = {n: p for n, p in trainer.model.named_parameters() if "lora_B" in n}
    assert params and any(p.abs().sum() > 0 for p in params.values())  # trained values, not a fresh zero init
    for name, value in saved.items():
        if "lora_B" in name:
            match = [p for n, p in params.items() if n.replace(".default", "").endswith(name.split("base_model.model.")[-1])]
            assert match and torch.equal(match[0].detach(), value), name
    assert all(p.requires_grad for p in params.values())  # and they keep training
    del sft


def test_docs_grpo_snippet_runs(tmp_path, monkeypatch):
    doc = (REPO / "docs" / "grpo.md").read_text()
    snippet = re.search(r"<!-- DOCS-SNIPPET: grpo -->\n```python\n(.*?)```", doc, re.DOTALL).group(1)
    monkeypatch.chdir(tmp_path)
    exec(compile(snippet, "docs/grpo.md", "exec"), {})
    assert (tmp_path / "runs" / "grpo_snippet").exists()
