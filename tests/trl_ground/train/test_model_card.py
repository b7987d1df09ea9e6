"""Every folder a run writes carries the project's model card: base model, data, command,
metrics of the latest evaluation; not TRL's "fine-tuned version of [None]" nor PEFT's template."""

import shlex

from trl_ground.train.grpo import GroundingGRPOTrainer
from trl_ground.train.model_card import ModelCardMixin, RunInfo, last_evaluation, render_card
from trl_ground.train.trainer import GroundingSFTTrainer


def test_every_folder_of_a_lora_run_has_the_projects_card(lora_run, tiny_model_dir, synthetic_data):
    train, test, _ = synthetic_data
    for folder in ("checkpoint-1", "checkpoint-2", "final", "final_merged", "."):
        card = (lora_run / folder / "README.md").read_text()
        assert "[None]" not in card and "More Information Needed" not in card, folder
        assert f"**Base model:** {tiny_model_dir}" in card and f"`train_json`: {train}" in card and f"`eval_json`: {test}" in card
        command = card.split("```bash\n", 1)[1].split("\n", 1)[0]
        assert shlex.split(command)[:3] == ["trl-ground-sft", "--config", shlex.split(command)[2]] and "--use-lora true" in command
        assert "LoRA (16-bit base), r 16" in card
    assert "## Evaluation" not in (lora_run / "checkpoint-1" / "README.md").read_text()  # evaluated at step 2 only
    for folder in ("checkpoint-2", "final", "final_merged"):
        card = (lora_run / folder / "README.md").read_text()
        assert "## Evaluation (step 2" in card and "| f1_positive |" in card, folder
    assert "library_name: peft" in (lora_run / "final" / "README.md").read_text()
    assert "a whole model" in (lora_run / "final_merged" / "README.md").read_text()
    assert f"--resume-from-checkpoint {lora_run / 'checkpoint-1'}" in (lora_run / "checkpoint-1" / "README.md").read_text()
    assert f"trl-ground-predict --model {lora_run / 'final'} " in (lora_run / "README.md").read_text()


def test_a_whole_model_without_evaluation(tmp_path):
    folder = tmp_path / "run" / ".final.staging"  # what save_final writes before renaming it final/
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    card = render_card(RunInfo("unsloth/Qwen3-VL-2B-Instruct", adaptation="full fine-tuning"), folder, tmp_path / "run", 7)
    assert card.startswith("---\nbase_model: unsloth/Qwen3-VL-2B-Instruct\nlibrary_name: transformers")
    assert "# final:" in card and "**Optimizer step:** 7" in card and "## Evaluation" not in card
    assert f"trl-ground-predict --model {tmp_path / 'run' / 'final'} " in card and "PeftModel" not in card


def test_last_evaluation_skips_training_logs():
    history = [{"eval_f1": 0.2, "eval_runtime": 3.0, "step": 5}, {"loss": 1.0, "step": 6}]
    assert last_evaluation(history) == (5, {"eval_f1": 0.2})
    assert last_evaluation([{"loss": 1.0}]) == (None, {})


def test_both_trainers_write_the_projects_card():
    for trainer in (GroundingSFTTrainer, GroundingGRPOTrainer):
        assert trainer.create_model_card is ModelCardMixin.create_model_card and trainer._save is ModelCardMixin._save
