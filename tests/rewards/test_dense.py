"""The bounded dense score: hand-computed cases and the properties the cost must have."""

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from rewards import ScoringSettings, dense_score, giou_matrix, iou_matrix, to_qwen_answer
from rewards.dense import pair_quality

GT = [[0.1, 0.1, 0.3, 0.3], [0.5, 0.5, 0.9, 0.9]]


def boxes_strategy(min_size=0, max_size=5):
    """Lists of well-formed boxes (positive width and height) in [0, 1]."""
    corner = st.tuples(st.floats(0, 0.9), st.floats(0, 0.9), st.floats(0.02, 0.5), st.floats(0.02, 0.5))
    return st.lists(corner, min_size=min_size, max_size=max_size).map(
        lambda cs: np.array([[x, y, min(x + w, 1.0), min(y + h, 1.0)] for x, y, w, h in cs]).reshape(-1, 4)
    )


def test_hand_computed():
    exact = dense_score(GT, GT)
    assert exact.score == 1.0 and exact.box_quality.tolist() == [1.0, 1.0] and exact.match.tolist() == [0, 1]
    # one exact box of two: 2 * 1 / (1 + 2)
    assert dense_score(GT[:1], GT).score == pytest.approx(2 / 3)
    # a far box: IoU 0, GIoU = -(C - U) / C with C the enclosing box
    far = [[0.7, 0.0, 0.8, 0.1]]
    giou = float(giou_matrix(far, GT[:1])[0, 0])
    assert dense_score(far, GT[:1], giou_weight=0.5).score == pytest.approx(2 * 0.25 * (1 + giou) / 2)
    assert dense_score(far, GT[:1], giou_weight=0.0).score == 0.0  # plain IoU: a miss is worth nothing
    # an exact duplicate is not matched, but counts: 2 * 1 / (2 + 1)
    dup = dense_score([GT[0], GT[0]], GT[:1])
    assert dup.duplicate.tolist() == [False, True] and dup.score == pytest.approx(2 / 3) and dup.match.tolist() == [0, -1]
    assert dense_score(GT[:1], GT, norm="max").score == pytest.approx(0.5)


def test_empty_answers_and_negative_prompts():
    assert dense_score([], GT).score == 0.0
    assert dense_score([], []).score == 1.0
    assert dense_score(GT[:1], []).score == 0.0


def test_label_aware_boxes_of_another_class_earn_nothing():
    s = ScoringSettings(label_aware_matching=True)
    answer = '[{"bbox_2d": [100, 100, 300, 300], "label": "car"}]'
    assert s.score([answer], [GT[:1]], query_labels=["ship"])[0].dense.score == 0.0
    assert s.score([answer], [GT[:1]], query_labels=["car"])[0].dense.score == 1.0


@settings(max_examples=300, deadline=None)
@given(pred=boxes_strategy(), gt=boxes_strategy(), w=st.floats(0, 1))
def test_bounded_and_equal_to_the_batch_path(pred, gt, w):
    s = dense_score(pred, gt, giou_weight=w)
    assert 0.0 <= s.score <= 1.0 and ((0 <= s.box_quality) & (s.box_quality <= 1)).all()
    batch = ScoringSettings(giou_weight=w).score([to_qwen_answer(pred, None)], [gt], coord_space="qwen")[0].dense
    rounded = np.round(pred * 1000) / 1000  # the answer text carries 0..1000 integers
    assert batch.score == pytest.approx(dense_score(rounded, gt, giou_weight=w).score, abs=1e-9)


@settings(max_examples=300, deadline=None)
@given(pred=boxes_strategy(min_size=1), gt=boxes_strategy(min_size=1), w=st.floats(0.01, 1))
def test_any_box_beats_the_empty_answer_on_a_prompt_with_boxes(pred, gt, w):
    assert dense_score(pred, gt, giou_weight=w).score > dense_score([], gt).score == 0.0


@settings(max_examples=200, deadline=None)
@given(pred=boxes_strategy(min_size=1), gt=boxes_strategy(min_size=1), j=st.integers(0, 4), t=st.floats(0.05, 1.0))
def test_moving_a_box_towards_its_match_never_lowers_the_score(pred, gt, j, t):
    before = dense_score(pred, gt)
    j = j % len(pred)
    assume(before.match[j] >= 0)
    moved = pred.copy()
    moved[j] = pred[j] + t * (gt[before.match[j]] - pred[j])
    after = dense_score(moved, gt)
    assume((after.duplicate == before.duplicate).all())  # the move made no box a duplicate of another
    # the pair itself improves ...
    q = lambda b: pair_quality(iou_matrix([b], [gt[before.match[j]]]), giou_matrix([b], [gt[before.match[j]]]), 0.5)[0, 0]  # noqa: E731
    assert q(moved[j]) >= q(pred[j]) - 1e-12
    # ... and so does the best assignment's total
    assert after.score >= before.score - 1e-12


@settings(max_examples=200, deadline=None)
@given(pred=boxes_strategy(min_size=1), gt=boxes_strategy(), j=st.integers(0, 4))
def test_duplicating_a_box_never_raises_the_score(pred, gt, j):
    copy = np.concatenate([pred, pred[j % len(pred)][None]])
    assert dense_score(copy, gt).score <= dense_score(pred, gt).score + 1e-12


@settings(max_examples=100, deadline=None)
@given(pred=boxes_strategy(min_size=1))
def test_on_a_prompt_without_boxes_the_empty_answer_is_the_unique_best(pred):
    assert dense_score([], []).score == 1.0 > dense_score(pred, []).score


def test_costs_rank_answers_the_counts_cost_gets_wrong():
    """Under the counts cost [] beats a near miss; under the dense cost the near miss wins."""
    near = '[{"bbox_2d": [150, 150, 350, 350]}]'  # IoU 0.39 with the box: below the 0.5 threshold
    counts, dense = ScoringSettings(cost="counts"), ScoringSettings(cost="dense")
    for settings_, near_wins in ((counts, False), (dense, True)):
        empty, miss = (settings_.answer_cost(s) for s in settings_.score(["[]", near], [GT[:1], GT[:1]]))
        assert (miss < empty) == near_wins


# ---- marginal contributions (box-level credit) ------------------------------------------
SEPARATED_GT = [[0.0, 0.0, 0.1, 0.1], [0.3, 0.3, 0.4, 0.4], [0.6, 0.6, 0.7, 0.7]]


def without(boxes, j):
    return [b for i, b in enumerate(boxes) if i != j]


@pytest.mark.parametrize("norm", ["f1", "max"])
def test_marginal_contributions_equal_rescoring_without_the_box(norm):
    """Where removing box j changes no other match, Delta_j is exactly the score lost."""
    from rewards.dense import marginal_contributions

    near = [[0.01, 0.0, 0.11, 0.1], [0.3, 0.32, 0.4, 0.42]]  # each close to its own ground truth
    cases = [
        (near, SEPARATED_GT, range(2)),  # N < M: every box matched, none competes for another's
        (near + [[0.9, 0.9, 0.95, 0.95]], SEPARATED_GT[:2], [2]),  # N > M: the unmatched box
        (near + [[0.01, 0.0, 0.11, 0.1]], SEPARATED_GT, [2]),  # a duplicate of box 0
        (near, [], range(2)),  # a prompt without boxes, several boxes
        (near[:1], [], [0]),  # ... one box
    ]
    for pred, gt, removable in cases:
        full = dense_score(pred, gt, norm=norm)
        delta = marginal_contributions(full, norm)
        assert delta.shape == (len(pred),)
        for j in removable:
            assert delta[j] == pytest.approx(full.score - dense_score(without(pred, j), gt, norm=norm).score), (pred, gt, j)


def test_a_true_positive_contributes_even_below_the_group_mean_quality():
    """The old rule (group mean quality minus the box's) pushed down a true positive of
    below-average quality; its marginal contribution to the answer's score is positive."""
    from rewards.dense import marginal_contributions

    gt = SEPARATED_GT[:2]
    sloppy = dense_score([[0.0, 0.0, 0.1, 0.13]], gt)  # IoU 0.77: a true positive
    group_mean_quality = np.mean([1.0, 1.0, sloppy.box_quality[0]])  # two other answers are exact
    assert sloppy.box_quality[0] < group_mean_quality
    assert marginal_contributions(sloppy)[0] > 0
    rng = np.random.default_rng(0)
    for _ in range(300):  # any true positive (IoU >= 0.5) of any answer, with the default settings
        g = rng.uniform(0, 0.8, (rng.integers(1, 4), 2))
        gt = np.concatenate([g, g + rng.uniform(0.05, 0.2, g.shape)], axis=1)
        p = rng.uniform(0, 0.8, (rng.integers(1, 5), 2))
        pred = np.concatenate([p, p + rng.uniform(0.05, 0.2, p.shape)], axis=1)
        pred[0] = gt[0] + rng.uniform(-0.01, 0.01, 4)  # box 0 is (close to) right
        d = dense_score(pred, gt)
        delta = marginal_contributions(d)
        iou = iou_matrix(pred, gt)
        for j in np.flatnonzero(d.match >= 0):
            if iou[j, d.match[j]] >= 0.5:
                assert delta[j] > 0


def test_unmatched_and_duplicate_boxes_contribute_negatively():
    from rewards.dense import marginal_contributions

    pred = [[0.0, 0.0, 0.1, 0.1], [0.0, 0.0, 0.1, 0.1], [0.9, 0.9, 0.95, 0.95]]  # right, duplicate, extra
    d = dense_score(pred, SEPARATED_GT[:1])
    assert d.duplicate.tolist() == [False, True, False] and d.match.tolist() == [0, -1, -1]
    delta = marginal_contributions(d)
    assert delta[0] > 0 and delta[1] < 0 and delta[2] < 0
    # hand-computed: T = 1, N = 3, M = 1: 2/4 - 2/3 for a box of quality 0, 2/4 - 0 for the exact one
    assert delta.tolist() == pytest.approx([0.5, 0.5 - 2 / 3, 0.5 - 2 / 3])
    # max: T / max(3, 1) - (T - q) / max(2, 1)
    assert marginal_contributions(d, "max").tolist() == pytest.approx([1 / 3, 1 / 3 - 1 / 2, 1 / 3 - 1 / 2])
    assert marginal_contributions(dense_score([], SEPARATED_GT)).shape == (0,)
    with pytest.raises(ValueError, match="norm"):
        marginal_contributions(d, "mean")
