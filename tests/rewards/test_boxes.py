import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rewards import as_boxes, clip_boxes, giou_matrix, iou_matrix, valid_box_mask


def loop_iou(a, b):
    """Plain-loop reference, one pair at a time."""
    out = np.zeros((len(a), len(b)))
    for i, p in enumerate(a):
        for j, q in enumerate(b):
            pa = max(p[2] - p[0], 0) * max(p[3] - p[1], 0)
            qa = max(q[2] - q[0], 0) * max(q[3] - q[1], 0)
            iw = max(min(p[2], q[2]) - max(p[0], q[0]), 0)
            ih = max(min(p[3], q[3]) - max(p[1], q[1]), 0)
            inter = iw * ih
            union = pa + qa - inter
            out[i, j] = inter / union if union > 0 else 0.0
    return out


def loop_giou(a, b):
    iou = loop_iou(a, b)
    out = np.zeros_like(iou)
    for i, p in enumerate(a):
        for j, q in enumerate(b):
            pa = max(p[2] - p[0], 0) * max(p[3] - p[1], 0)
            qa = max(q[2] - q[0], 0) * max(q[3] - q[1], 0)
            iw = max(min(p[2], q[2]) - max(p[0], q[0]), 0)
            ih = max(min(p[3], q[3]) - max(p[1], q[1]), 0)
            union = pa + qa - iw * ih
            c = max(max(p[2], q[2]) - min(p[0], q[0]), 0) * max(max(p[3], q[3]) - min(p[1], q[1]), 0)
            out[i, j] = iou[i, j] - (c - union) / c if c > 0 else iou[i, j]
    return out


def test_hand_computed_iou():
    a = [[0.0, 0.0, 0.5, 0.5]]
    b = [[0.25, 0.25, 0.75, 0.75], [0.0, 0.0, 0.5, 0.5], [0.6, 0.6, 0.9, 0.9]]
    # overlap 0.25*0.25 = 0.0625; union 0.25 + 0.25 - 0.0625 = 0.4375; 0.0625/0.4375 = 1/7
    np.testing.assert_allclose(iou_matrix(a, b), [[1 / 7, 1.0, 0.0]])


def test_hand_computed_giou():
    a = [[0.0, 0.0, 0.2, 0.2]]
    b = [[0.4, 0.0, 0.6, 0.2]]
    # IoU 0; enclosing 0.6*0.2 = 0.12; union 0.04 + 0.04 = 0.08; GIoU = 0 - 0.04/0.12 = -1/3
    np.testing.assert_allclose(giou_matrix(a, b), [[-1 / 3]])


def test_empty_shapes():
    assert iou_matrix([], [[0, 0, 1, 1]] * 3).shape == (0, 3)
    assert iou_matrix([[0, 0, 1, 1]] * 2, np.zeros((0, 4))).shape == (2, 0)
    assert giou_matrix(None, []).shape == (0, 0)


def test_degenerate_and_flipped_boxes_give_zero_not_nan():
    a = [[0.5, 0.5, 0.5, 0.5], [0.8, 0.8, 0.2, 0.2], [np.nan, 0, 1, 1], [0, 0, np.inf, 1]]
    b = [[0.5, 0.5, 0.5, 0.5], [0.0, 0.0, 1.0, 1.0]]
    iou = iou_matrix(a, b)
    giou = giou_matrix(a, b)
    assert np.isfinite(iou).all() and np.isfinite(giou).all()
    assert (iou == 0).all()
    assert (giou >= -1).all() and (giou <= 1).all()


def test_bad_shape_raises():
    with pytest.raises(ValueError):
        as_boxes([[1, 2, 3]])


def test_valid_mask_and_clip():
    np.testing.assert_array_equal(valid_box_mask([[0, 0, 1, 1], [0.5, 0, 0.4, 1], [0, 0, np.nan, 1]]), [True, False, False])
    np.testing.assert_allclose(clip_boxes([[-0.1, 0.2, 1.3, 0.9]]), [[0.0, 0.2, 1.0, 0.9]])


coord = st.floats(-0.5, 1.5, allow_nan=False, allow_infinity=False)
box_lists = st.lists(st.lists(coord, min_size=4, max_size=4), min_size=0, max_size=6)


@settings(max_examples=200, deadline=None)
@given(box_lists, box_lists)
def test_vectorized_matches_loop_reference(a, b):
    a, b = as_boxes(a), as_boxes(b)
    np.testing.assert_allclose(iou_matrix(a, b), loop_iou(a, b), atol=1e-12)
    np.testing.assert_allclose(giou_matrix(a, b), np.clip(loop_giou(a, b), -1, 1), atol=1e-12)
    assert ((iou_matrix(a, b) >= 0) & (iou_matrix(a, b) <= 1)).all()
    assert ((giou_matrix(a, b) >= -1) & (giou_matrix(a, b) <= 1)).all()
