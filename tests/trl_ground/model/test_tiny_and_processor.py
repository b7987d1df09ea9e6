import torch
from PIL import Image
from transformers import AutoProcessor, Qwen3VLForConditionalGeneration

from rewards import to_qwen_answer
from trl_ground.data.collator import GroundingCollator
from trl_ground.data.prompts import grounding_prompt


def example(answer_boxes, size=(128, 96)):
    return {
        "image": Image.new("RGB", size, (120, 30, 30)),
        "prompt": grounding_prompt("Locate every ship in the image."),
        "completion": [{"role": "assistant", "content": to_qwen_answer(answer_boxes, "ship")}],
        "gt_boxes": [list(b) for b in answer_boxes],
        "class": "ship",
    }


def test_tiny_model_loads_runs_forward_and_generate(tiny_model_dir):
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    model = Qwen3VLForConditionalGeneration.from_pretrained(tiny_model_dir)
    tok = processor.tokenizer
    assert tok.tokenize("523") == ["5", "2", "3"]  # every digit its own token
    for special in ("<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|image_pad|>", "<|vision_end|>"):
        assert tok.convert_tokens_to_ids(special) != tok.unk_token_id
    assert model.config.vision_config.deepstack_visual_indexes  # deepstack included
    batch = GroundingCollator(processor)([example([[0.1, 0.2, 0.3, 0.4]])])
    out = model(**{k: v for k, v in batch.items() if k not in ("gt_boxes", "query_class")})
    assert out.logits.shape[:2] == batch["input_ids"].shape and torch.isfinite(out.loss)
    gen = model.generate(input_ids=batch["input_ids"][:, :10], attention_mask=batch["attention_mask"][:, :10], max_new_tokens=4, do_sample=False)
    assert gen.shape == (1, 14)


def test_real_processor_image_tokens_and_label_mask(real_processor_dir):
    processor = AutoProcessor.from_pretrained(real_processor_dir)
    tok = processor.tokenizer
    assert tok.tokenize("[523, 1000]") == ["[", "5", "2", "3", ",", "Ġ", "1", "0", "0", "0", "]"]  # one token per digit
    collator = GroundingCollator(processor)
    boxes = [[0.1, 0.2, 0.3, 0.4], [0.5, 0.5, 0.75, 0.9]]
    batch = collator([example(boxes, size=(640, 480)), example(boxes[:1], size=(320, 320))])
    # 640x480 -> grid [1, 30, 40] -> 300 image tokens (patch 16, merge 2)
    assert batch["image_grid_thw"][0].tolist() == [1, 30, 40]
    image_pad = tok.convert_tokens_to_ids("<|image_pad|>")
    n_image_tokens = (batch["input_ids"] == image_pad).sum(dim=1).tolist()
    assert n_image_tokens == [int(g.prod()) // 4 for g in batch["image_grid_thw"]]
    for row, n_boxes in zip(range(2), (2, 1)):
        labelled = batch["labels"][row][batch["labels"][row] != -100]
        text = tok.decode(labelled)
        expected = to_qwen_answer(boxes[:n_boxes], "ship") + "<|im_end|>"
        assert text == expected  # exactly the answer and its closing <|im_end|>
    assert [g.shape for g in batch["gt_boxes"]] == [(2, 4), (1, 4)] and batch["query_class"] == ["ship", "ship"]
