"""The demo's closing summary says what the numbers say."""

import json

from trl_ground.cli.demo_summary import main
from trl_ground.inference.demo_summary import grpo_summary, sft_summary


def metrics(f1, empty, hallucinated, unparseable):
    return {
        "counts": {"examples": 20},
        "with_boxes": {"queries": 10, "f1": f1, "precision": f1, "recall": f1, "empty_fraction_positive": empty},
        "without_boxes": {"queries": 10, "pred_boxes": 3, "hallucination_fraction_negative": hallucinated},
        "unparseable_fraction": unparseable,
    }


def write_run(tmp_path, m, history):
    (tmp_path / "metrics.json").write_text(json.dumps(m))
    (tmp_path / "trainer_state.json").write_text(json.dumps({"log_history": history}))
    (tmp_path / "final").mkdir()
    return tmp_path


def test_a_model_that_does_not_locate_is_called_so(tmp_path):
    history = [{"step": 2, "lm_loss": 5.5, "unparseable_fraction": 1.0}, {"step": 40, "lm_loss": 1.2, "unparseable_fraction": 0.25},
               {"step": 40, "train_runtime": 31.0}]
    text = sft_summary(write_run(tmp_path, metrics(0.0, 0.6, 0.3, 0.05), history))
    assert "40 steps in 31 s" in text and "full fine-tuning" in text
    assert "lm_loss 5.50 -> 1.20" in text and "100% -> 25%" in text
    assert "prompts with boxes (10): F1@0.5 0.00" in text and "empty answers 60%" in text
    assert "it writes answers in the right format" in text and "it does not locate objects" in text
    assert "not where the objects are" in text
    assert f"model: {tmp_path / 'final'}" in text and "pictures" not in text  # only what exists is listed


def test_a_model_that_locates_is_not_called_broken(tmp_path):
    text = sft_summary(write_run(tmp_path, metrics(0.6, 0.1, 0.0, 0.8), []))
    assert "it finds some of the objects (F1@0.5 0.60" in text and "has not learned the answer format" in text
    assert "not where the objects are" not in text


def test_grpo_summary_signal_or_why_not(tmp_path):
    log = [{"step": 2, "frac_reward_zero_std": 0.5, "grad_norm": 0.3, "reward": -2.0},
           {"step": 4, "frac_reward_zero_std": 0.25, "grad_norm": 0.1, "reward": -1.5}]
    (tmp_path / "trainer_state.json").write_text(json.dumps({"log_history": log}))
    text = grpo_summary(tmp_path)
    assert "Learning signal: in 62% of the groups" in text and "-2.00 -> -1.50" in text
    log = [{"step": 2, "frac_reward_zero_std": 1.0, "grad_norm": 0.0, "reward": -2.0}]
    (tmp_path / "trainer_state.json").write_text(json.dumps({"log_history": log}))
    assert "No learning signal" in grpo_summary(tmp_path)


def test_answering_empty_everywhere_is_named(tmp_path):
    text = sft_summary(write_run(tmp_path, metrics(0.0, 1.0, 0.0, 0.0), []))
    assert "answers [] (no box) to nearly every prompt" in text and "100% of the prompts with boxes" in text


def test_the_command_prints_the_summary_of_either_demo(tmp_path, capsys):
    run = write_run(tmp_path, metrics(0.6, 0.1, 0.0, 0.8), [{"step": 2, "frac_reward_zero_std": 1.0, "grad_norm": 0.0, "reward": -2.0}])
    assert main([str(run)]) == 0
    assert capsys.readouterr().out == sft_summary(run) + "\n"
    assert main([str(run), "--grpo"]) == 0
    assert "No learning signal" in capsys.readouterr().out
    assert main([str(tmp_path / "missing")]) == 2 and capsys.readouterr().err.startswith("error:")
