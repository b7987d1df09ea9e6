"""predict -> evaluate -> pictures on the tiny model, through a merged model and base + adapter."""

import json
import subprocess
import sys

import pytest
import torch

from tests.helpers import REPO


@pytest.fixture(scope="module")
def adapter_and_merged(tiny_model_dir, tmp_path_factory):
    """A LoRA adapter with non-zero weights, and the same merged into a full model."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText, AutoProcessor

    out = tmp_path_factory.mktemp("pred")
    model = get_peft_model(AutoModelForImageTextToText.from_pretrained(tiny_model_dir),
                           LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    model.save_pretrained(out / "adapter")
    processor.save_pretrained(out / "adapter")
    model.merge_and_unload().save_pretrained(out / "merged")
    processor.save_pretrained(out / "merged")
    return out / "adapter", out / "merged"


def predict(*args):
    from scripts.predict_bbox import main

    assert main([*map(str, args), "--max-new-tokens", "24", "--batch-size", "4"]) == 0


def test_predict_with_merged_and_with_adapter_agree(tiny_model_dir, synthetic_data, adapter_and_merged, tmp_path):
    adapter, merged = adapter_and_merged
    train, test, root = synthetic_data
    predict("--model", merged, "--test-json", test, "--img-root", root, "--out", tmp_path / "a.json", "--viz", tmp_path / "viz")
    predict("--model", tiny_model_dir, "--adapter", adapter, "--test-json", test, "--img-root", root, "--out", tmp_path / "b.json")
    a, b = json.loads((tmp_path / "a.json").read_text()), json.loads((tmp_path / "b.json").read_text())
    assert len(a) == len(b) > 0
    assert [r["answer"] for r in a] == [r["answer"] for r in b]
    for r in a:
        assert set(r) >= {"image", "answer", "boxes", "boxes_px", "labels", "scores", "valid_json", "truncated", "class"}
        assert len(r["scores"]) == len(r["boxes"]) and all(0 <= s <= 1 for s in r["scores"])
    assert len(list((tmp_path / "viz").glob("*.png"))) == len(a)

    from scripts.eval_bbox import main as eval_main

    assert eval_main(["--pred", str(tmp_path / "a.json"), "--gt", str(test), "--out", str(tmp_path / "m.json"), "--viz", str(tmp_path / "viz2")]) == 0
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert {"precision", "recall", "f1", "mean_iou", "ap50"} <= set(metrics)
    assert metrics["counts"]["examples"] == len(a)
    assert list((tmp_path / "viz2").glob("*.png"))


def test_reference_script_usage_on_a_folder_of_images(tiny_model_dir, synthetic_data, tmp_path):
    _, _, root = synthetic_data
    r = subprocess.run([sys.executable, "eval/generate_outputs_bbox.py", "--root", str(root / "images"), "--model", str(tiny_model_dir),
                        "--out", str(tmp_path / "o.json"), "--max-new-tokens", "8", "--class", "ship"],
                       capture_output=True, text=True, cwd=REPO, env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"})
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads((tmp_path / "o.json").read_text())
    assert len(out) == len(list((root / "images").glob("*.png"))) and out[0]["class"] == "ship"


def test_plot_training_from_a_run(tmp_path):
    from scripts.plot_training import main

    history = [{"step": s, "lm_loss": 5 - s * 0.1, "iou_loss": 0.5, "fp_loss": 1, "fn_loss": 1, "f1": 0.1 * s} for s in range(1, 6)]
    (tmp_path / "trainer_state.json").write_text(json.dumps({"log_history": history + [{"step": 5, "eval_f1": 0.3}]}))
    assert main([str(tmp_path)]) == 0
    assert (tmp_path / "training.png").stat().st_size > 1000
    assert main([str(tmp_path / "nothing-here")]) == 2


def test_confidences_follow_generation_logprobs(tiny_model_dir, synthetic_data):
    """The score of each box is exp(mean log-prob) of its coordinate tokens, recomputed here."""
    from trl_ground.data.dataset import ImageLoader
    from trl_ground.inference.predict import items_from_folder, load_for_inference, prompt_batch
    from trl_ground.sampling.generation import generate_with_logprobs

    _, _, root = synthetic_data
    model, processor = load_for_inference(str(tiny_model_dir))
    items = items_from_folder(root / "images", "ship")[:2]
    images = [ImageLoader(32 * 32, 448 * 448).load(i.image_path) for i in items]
    prompts = prompt_batch(processor, items, images, "sys", torch.device("cpu"))
    ids, mask, truncated, logprobs = generate_with_logprobs(model, prompts, processor.tokenizer, 6)
    assert (logprobs <= 0).all() and ids.shape == logprobs.shape
    with torch.no_grad():  # the same log-probabilities from a forward pass over prompt + answer
        full = torch.cat([prompts.input_ids, ids], dim=1)
        att = torch.cat([prompts.attention_mask, torch.ones_like(ids)], dim=1)
        mm = torch.cat([prompts.mm_token_type_ids, torch.zeros_like(ids)], dim=1)
        logits = model(input_ids=full, attention_mask=att, pixel_values=prompts.pixel_values,
                       image_grid_thw=prompts.image_grid_thw, mm_token_type_ids=mm).logits
    p = prompts.input_ids.shape[1]
    ref = torch.log_softmax(logits[:, p - 1 : -1].float(), -1).gather(-1, ids.unsqueeze(-1)).squeeze(-1)
    # generation suppressed the image tokens (renormalizing), so allow a small difference
    torch.testing.assert_close(logprobs, ref, atol=5e-2, rtol=0)
