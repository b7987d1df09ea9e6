"""The batched M-RoPE positions and the packed vision attention give exactly what the model
computes on its own."""

import pytest
import torch

from trl_ground.model.qwen3vl import PACKED_VISION_ATTENTION, mrope_position_ids, use_packed_vision_attention
from trl_ground.sampling.batches import prompts_from_sft_batch


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    from transformers import AutoModelForImageTextToText

    return AutoModelForImageTextToText.from_pretrained(tiny_model_dir).eval()


def sft_batch(tiny_model_dir, synthetic_data, sizes):
    """A collated SFT batch whose images have the given (width, height) sizes."""
    from PIL import Image

    from trl_ground.config import DataArguments
    from trl_ground.data.collator import GroundingCollator
    from trl_ground.data.dataset import build_examples
    from trl_ground.data.records import load_records
    from trl_ground.model.loading import load_processor

    train, _, root = synthetic_data
    processor = load_processor(str(tiny_model_dir), 128 * 128)
    rows = build_examples(load_records(train, root)[0], DataArguments(add_negatives=True))[: len(sizes)]
    for row, size in zip(rows, sizes):
        row["image"] = Image.open(row["image"]).convert("RGB").resize(size)
    return GroundingCollator(processor).__call__(rows), processor


@pytest.mark.parametrize("sizes", [[(64, 64)] * 4, [(64, 64), (96, 32), (32, 128), (64, 96)]])
def test_positions_equal_the_models_own_for_right_and_left_padding(model, tiny_model_dir, synthetic_data, sizes):
    batch, processor = sft_batch(tiny_model_dir, synthetic_data, sizes)
    for inputs in (batch, prompts_from_sft_batch(batch, processor.tokenizer.pad_token_id).model_inputs()):
        ref, ref_deltas = model.model.get_rope_index(
            inputs["input_ids"], mm_token_type_ids=inputs["mm_token_type_ids"], image_grid_thw=inputs["image_grid_thw"],
            attention_mask=inputs["attention_mask"],
        )
        positions, deltas = mrope_position_ids(inputs["mm_token_type_ids"], inputs["image_grid_thw"], inputs["attention_mask"], 2)
        assert torch.equal(positions, ref) and torch.equal(deltas, ref_deltas)
    assert torch.equal(batch["position_ids"], mrope_position_ids(batch["mm_token_type_ids"], batch["image_grid_thw"], batch["attention_mask"], 2)[0])


def test_positions_without_images_are_consecutive():
    types = torch.zeros(2, 5, dtype=torch.long)
    mask = torch.tensor([[1, 1, 1, 1, 1], [0, 0, 1, 1, 1]])
    positions, deltas = mrope_position_ids(types, None, mask, 2)
    assert positions[:, 1].tolist() == [[0, 0, 0, 1, 2]] * 3 and deltas.tolist() == [[0], [0]]


@pytest.mark.parametrize("grids", [[[1, 6, 6]] * 3, [[1, 6, 6], [1, 4, 8], [1, 2, 2]]])
def test_packed_vision_attention_equals_sdpa(tiny_model_dir, grids):
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir).eval()
    cfg = model.config.vision_config
    grid = torch.tensor(grids)
    torch.manual_seed(0)
    pixels = torch.randn(int(grid.prod(-1).sum()), cfg.in_channels * cfg.temporal_patch_size * cfg.patch_size**2)
    with torch.no_grad():
        ref = model.model.visual(pixels, grid_thw=grid)
        assert use_packed_vision_attention(model) and model.model.visual.config._attn_implementation == PACKED_VISION_ATTENTION
        out = model.model.visual(pixels, grid_thw=grid)
    torch.testing.assert_close(out.pooler_output, ref.pooler_output, rtol=1e-5, atol=1e-5)
    for a, b in zip(out.deepstack_features, ref.deepstack_features):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert not use_packed_vision_attention(model)  # already switched: nothing to do
