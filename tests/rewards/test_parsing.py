import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rewards import parse_boxes, to_qwen_answer


def test_qwen3vl_json_list():
    p = parse_boxes('[{"bbox_2d": [100, 200, 300, 400], "label": "ship"}, {"bbox_2d": [0, 0, 1000, 1000], "label": "car"}]')
    np.testing.assert_allclose(p.boxes, [[0.1, 0.2, 0.3, 0.4], [0, 0, 1, 1]])
    assert p.labels == ("ship", "car") and p.valid_json and not p.truncated


def test_single_object_and_fenced_block():
    p = parse_boxes('Sure!\n```json\n{"bbox_2d": [10, 20, 30, 40], "label": "ship"}\n```\nDone.')
    np.testing.assert_allclose(p.boxes, [[0.01, 0.02, 0.03, 0.04]])
    assert p.valid_json


def test_truncated_list_keeps_complete_boxes():
    text = '[{"bbox_2d": [100, 100, 200, 200], "label": "ship"}, {"bbox_2d": [300, 300, 400, 400], "label": "ship"}, {"bbox_2d": [500, 5'
    p = parse_boxes(text)
    assert len(p) == 2 and p.truncated and not p.valid_json
    np.testing.assert_allclose(p.boxes[1], [0.3, 0.3, 0.4, 0.4])


def test_floats_and_other_spaces():
    assert parse_boxes('[{"bbox_2d": [100.5, 200.25, 300, 400]}]').boxes[0, 0] == pytest.approx(0.1005)
    np.testing.assert_allclose(parse_boxes("[[0.1, 0.2, 0.3, 0.4]]", coord_space="norm").boxes, [[0.1, 0.2, 0.3, 0.4]])
    # pixels of a 200 x 100 image: 50/200 = 0.25, 10/100 = 0.1
    np.testing.assert_allclose(
        parse_boxes('[{"bbox_2d": [50, 10, 100, 50]}]', coord_space="pixel", image_size=(200, 100)).boxes,
        [[0.25, 0.1, 0.5, 0.5]],
    )


def test_old_qwen_box_tokens():
    p = parse_boxes("<|object_ref_start|>the ship<|object_ref_end|><|box_start|>(100,200),(300,400)<|box_end|>")
    np.testing.assert_allclose(p.boxes, [[0.1, 0.2, 0.3, 0.4]])
    assert p.labels == ("the ship",)


def test_bare_list_in_prose():
    p = parse_boxes("The ship is at [100, 200, 300, 400] in the image.")
    np.testing.assert_allclose(p.boxes, [[0.1, 0.2, 0.3, 0.4]])


def test_no_boxes_and_empty_answer():
    assert len(parse_boxes("There is no ship here.")) == 0
    p = parse_boxes("[]")
    assert len(p) == 0 and p.valid_json
    assert not parse_boxes("").truncated
    assert len(parse_boxes(None)) == 0


def test_out_of_range_clipped_and_bad_entries_skipped():
    p = parse_boxes('[{"bbox_2d": [-10, 0, 1200, 500]}, {"bbox_2d": [1, 2, 3]}, {"bbox_2d": ["a", 1, 2, 3]}, {"bbox_2d": [true, 1, 2, 3]}]')
    np.testing.assert_allclose(p.boxes, [[0.0, 0.0, 1.0, 0.5]])
    assert not p.valid_json  # some entries were unusable


def test_non_finite_and_huge_numbers_dropped():
    big = "1" + "0" * 400
    p = parse_boxes('[{"bbox_2d": [NaN, 0, 10, 10]}, {"bbox_2d": [%s, 0, 10, 10]}, {"bbox_2d": [1e999, 0, 1, 1]}, {"bbox_2d": [0, 0, 10, 10], "label": "ok"}]' % big)
    np.testing.assert_allclose(p.boxes, [[0, 0, 0.01, 0.01]])
    assert p.labels == ("ok",)


def test_bad_arguments_raise():
    with pytest.raises(ValueError):
        parse_boxes("[]", coord_space="pixels")
    with pytest.raises(ValueError):
        parse_boxes("[]", coord_space="pixel")


def test_round_trip_through_qwen_answer():
    boxes = np.array([[0.1234, 0.5, 0.9, 0.75]])
    p = parse_boxes(to_qwen_answer(boxes, "ship"))
    assert np.abs(p.boxes - boxes).max() <= 0.0005 + 1e-12
    assert p.labels == ("ship",)
    assert to_qwen_answer(boxes, "ship") == '[{"bbox_2d": [123, 500, 900, 750], "label": "ship"}]'


@settings(max_examples=500, deadline=None)
@given(st.text())
def test_parser_never_raises_on_any_text(text):
    p = parse_boxes(text)
    assert p.boxes.shape[1] == 4 and len(p.labels) == len(p.boxes)
    assert ((p.boxes >= 0) & (p.boxes <= 1)).all()


json_like = st.text(alphabet='[]{}",:0123456789.-bbox_2dlabel <|>()', max_size=120)


@settings(max_examples=500, deadline=None)
@given(json_like)
def test_parser_never_raises_on_json_like_noise(text):
    p = parse_boxes(text)
    assert np.isfinite(p.boxes).all()
