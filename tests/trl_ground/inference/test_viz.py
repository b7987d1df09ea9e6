"""Pictures of answers: outlines sized to the image and around (not over) small objects; a
truncated or unparseable answer is marked as such, not as "no boxes predicted"."""

import numpy as np
from PIL import Image

from trl_ground.inference.viz import GT_COLOUR, PRED_COLOUR, answer_note, draw_boxes, line_width


def picture(tmp_path, size=1024, **kwargs):
    Image.new("RGB", (size, size), (90, 90, 90)).save(tmp_path / "in.png")
    out = draw_boxes(tmp_path / "in.png", tmp_path / "out.png", **kwargs)
    return np.asarray(Image.open(out).convert("RGB")), out


def test_line_width_follows_the_image():
    assert line_width(128, 128) == line_width(512, 512) == 2
    assert line_width(1024, 768) == 3 and line_width(2048, 2048) == 6


def test_a_small_object_stays_visible_under_its_outlines(tmp_path):
    box = [0.5, 0.5, 0.51, 0.51]  # a 10 px object on a 1024 px image
    pixels, _ = picture(tmp_path, gt=[box], pred=[box], scores=[])
    band = pixels.shape[0] - 1024
    inside = pixels[band + 512 : band + 522, 512:522]
    assert (inside == 90).all(), "an outline covers the object"
    ring = pixels[band + 500 : band + 535, 500:535]
    outlined = {tuple(p) for p in ring.reshape(-1, 3)}
    assert GT_COLOUR in outlined and PRED_COLOUR in outlined
    rows_with_gt = np.unique(np.nonzero((pixels[band:, 505:530] == GT_COLOUR).all(-1))[0])
    assert len(rows_with_gt) <= 11 + 2 * line_width(1024, 1024)  # the object (10.24 px) and one width each side


def test_answer_notes():
    assert answer_note(0) == "no boxes predicted"
    assert answer_note(2) is None
    assert answer_note(0, valid_json=False, truncated=True, num_tokens=64) == "answer cut at the token limit (64 tokens): no complete box"
    assert answer_note(3, valid_json=False, truncated=True) == "answer cut at the token limit: 3 complete boxes recovered"
    assert answer_note(0, valid_json=False) == "answer not parseable: no box"
    assert answer_note(1, valid_json=False) == "answer not valid JSON: 1 box recovered"


def test_the_note_replaces_no_boxes_predicted(tmp_path):
    plain, _ = picture(tmp_path, size=256)
    noted, _ = picture(tmp_path, size=256, note=answer_note(0, valid_json=False, truncated=True, num_tokens=8))
    red = lambda p: int((p == PRED_COLOUR).all(-1).sum())  # noqa: E731
    assert red(noted) > red(plain) > 0  # a longer tag than "no boxes predicted"
