import pickle
import subprocess
import sys

import pytest

from rewards import ScoringSettings, grounding_terms, grpo
from rewards.grpo import REWARDS, completion_text, get_grounding_reward, get_reward

GT = [[0.1, 0.1, 0.3, 0.3], [0.5, 0.5, 0.9, 0.9]]


def test_terms_hand_computed():
    # pred 0 == gt 0 (IoU 1); pred 1 = [0.5,0.5,0.9,0.8] inside gt 1: 0.4*0.3/(0.4*0.4) = 0.75;
    # pred 2 far away -> FP. mean IoU (1 + 0.75)/2 = 0.875 -> iou_loss 0.125.
    pred = [[0.1, 0.1, 0.3, 0.3], [0.5, 0.5, 0.9, 0.8], [0.0, 0.9, 0.05, 1.0]]
    t = grounding_terms(pred, GT)
    assert t.iou_loss == pytest.approx(0.125)
    assert (t.fp, t.fn, t.n_matched) == (1.0, 0.0, 2)
    assert t.precision == pytest.approx(2 / 3) and t.recall == 1.0 and t.f1 == pytest.approx(0.8)
    # counts cost with the reference script's weights: 1*0.125 + 0.5*1 + 1*0 = 0.625
    assert ScoringSettings().counts_cost(t) == pytest.approx(0.625)
    assert ScoringSettings(fp_loss_weight=2.0).counts_cost(t) == pytest.approx(2.125)


def test_terms_edge_cases():
    both_empty = grounding_terms([], [])
    assert (both_empty.iou_loss, both_empty.fp, both_empty.fn, both_empty.f1) == (0.0, 0.0, 0.0, 1.0)
    no_pred = grounding_terms([], GT)
    assert (no_pred.iou_loss, no_pred.fn, no_pred.recall, no_pred.f1) == (1.0, 2.0, 0.0, 0.0)
    no_gt = grounding_terms(GT, [])
    assert (no_gt.iou_loss, no_gt.fp, no_gt.precision) == (1.0, 2.0, 0.0)


def test_label_aware_matching():
    t = grounding_terms(GT, GT, pred_labels=["ship", "car"], query_label="Ship")
    assert (t.n_matched, t.fp, t.fn) == (1, 1.0, 1.0)
    assert grounding_terms(GT, GT, pred_labels=["ship", None], query_label="ship").n_matched == 2
    with pytest.raises(ValueError):
        grounding_terms(GT, GT, pred_labels=["ship"], query_label="ship")


def answer(boxes, label="ship"):
    return "[" + ", ".join(
        '{"bbox_2d": [%d, %d, %d, %d], "label": "%s"}' % (*[round(v * 1000) for v in b], label) for b in boxes
    ) + "]"


def test_grounding_reward_is_negative_trainer_cost():
    pred = [[0.1, 0.1, 0.3, 0.3], [0.0, 0.9, 0.05, 1.0]]
    reward = get_grounding_reward(ScoringSettings(cost="counts"))
    expected = -ScoringSettings().counts_cost(grounding_terms(pred, GT))
    # one FP (0.5) + one FN (1.0), IoU loss 0 -> -1.5
    assert reward([answer(pred)], gt_boxes=[GT]) == [pytest.approx(expected)] == [pytest.approx(-1.5)]


def test_rewards_accept_conversational_completions_and_ignore_kwargs():
    conv = [[{"role": "assistant", "content": answer(GT)}], [{"role": "assistant", "content": [{"type": "text", "text": "nothing"}]}]]
    out = grpo.f1_reward(conv, gt_boxes=[GT, GT], prompts=["a", "b"], trainer_state=object(), whatever=1)
    assert out == [1.0, 0.0]
    assert grpo.format_reward(["[]", "garbage", answer(GT)]) == [1.0, 0.0, 1.0]
    assert grpo.iou_reward([answer(GT)], gt_boxes=[None]) == [None]
    assert grpo.fp_reward([answer(GT)], gt_boxes=[[]]) == [-2.0]
    assert grpo.fn_reward(["[]"], gt_boxes=[GT]) == [-2.0]
    assert completion_text({"role": "assistant", "content": "x"}) == "x"


def test_label_aware_reward_reads_class_column():
    r = get_reward("f1", ScoringSettings(label_aware_matching=True))
    assert r([answer(GT, "car")], gt_boxes=[GT], **{"class": ["ship"]}) == [0.0]
    assert r([answer(GT, "ship")], gt_boxes=[GT], **{"class": ["ship"]}) == [1.0]


def test_settings_and_factories_check_arguments_and_names_are_stable():
    with pytest.raises(ValueError, match="iou_loss_weight"):
        ScoringSettings(iou_loss_weight=-1)
    with pytest.raises(ValueError, match=r"valid names: \['f1', 'fn', 'format', 'fp', 'grounding', 'iou'\]"):
        get_reward("precision")
    with pytest.raises(ValueError, match="iou_threshold"):
        ScoringSettings(iou_threshold=2)
    with pytest.raises(ValueError, match="method"):
        ScoringSettings(match_method="random")
    assert get_grounding_reward().__name__ == "grounding_reward"
    assert grpo.iou_reward.__name__ == "iou_reward"
    assert all(get_reward(name).__name__ == f"{name}_reward" for name in REWARDS)


def test_rewards_pickle():
    r = get_grounding_reward(ScoringSettings(iou_loss_weight=2.0, fp_loss_weight=0.1, fn_loss_weight=0.3, label_aware_matching=True))
    r2 = pickle.loads(pickle.dumps(r))
    assert r2.__name__ == r.__name__ and r2([answer(GT)], gt_boxes=[GT]) == r([answer(GT)], gt_boxes=[GT])
    assert pickle.loads(pickle.dumps(grpo.format_reward))(["[]"]) == [1.0]


def test_import_rewards_does_not_import_torch():
    code = "import sys, rewards, rewards.grpo; assert 'torch' not in sys.modules and 'transformers' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
