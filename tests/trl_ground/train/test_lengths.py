"""Token counts of training examples and the warning for those max_length would cut
(trl_ground/train/lengths.py)."""

import re

import numpy as np

from trl_ground.train.lengths import DEFAULT_MAX_LENGTH, image_tokens, too_long_message


def test_image_tokens_follow_the_resize():
    assert image_tokens(448, 448, 0, 448 * 448) == 196  # (448 / 16)^2 / 2^2
    assert image_tokens(896, 896, 0, 448 * 448) == 196  # resized down to max_pixels first
    assert image_tokens(128, 64, 0, 10**7) == 8 * 4 // 4
    assert image_tokens(300, 200, 0, 10**7) < image_tokens(600, 400, 0, 10**7)


def row(i, boxes=1, crop=None):
    return {"record": i, "image_id": f"img{i}", "class": "ship", "gt_boxes": [[0, 0, 1, 1]] * boxes, "crop": crop}


def test_too_long_names_the_longest_first_and_counts_the_rest():
    rows = [row(i) for i in range(10)]
    lengths = np.array([10, 900, 20, 700, 30, 800, 40, 600, 650, 1000])
    assert too_long_message(rows, lengths, None, "train.json") is None
    assert too_long_message(rows, lengths, 1000, "train.json") is None
    message = too_long_message(rows, lengths, 500, "train.json")
    assert message.startswith("train.json: 6 of 10 examples are longer than max_length 500 tokens")
    named = re.findall(r"record (\d+) \(img\d+, 'ship', 1 boxes\): ([\d,]+) tokens", message)
    assert named == [("9", "1,000"), ("1", "900"), ("5", "800"), ("3", "700"), ("8", "650")]  # longest first, five of them
    assert "and 1 more" in message and "--tile-size" in message and "--max-length" in message
    tiled = too_long_message([row(0, 3, crop=(0, 0, 64, 64))], np.array([90]), 50, "t.json")
    assert "record 0 (img0 tile (0, 0, 64, 64), 'ship', 3 boxes): 90 tokens" in tiled


def test_the_default_max_length_is_the_trainers():
    from trl_ground.config import GroundingSFTConfig

    assert DEFAULT_MAX_LENGTH == GroundingSFTConfig.__dataclass_fields__["max_length"].default
