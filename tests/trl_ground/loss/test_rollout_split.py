"""The logged metrics split by prompt type: F1 on prompts with boxes cannot be earned on the negatives."""

import math

import torch

from rewards import ScoringSettings
from trl_ground.loss.rollout import Rollout, split_metrics

BOX = [0.1, 0.1, 0.3, 0.3]
RIGHT = '[{"bbox_2d": [100, 100, 300, 300]}]'


def rollout(texts, gts):
    scored = ScoringSettings().score(texts, gts)
    return Rollout(samples=None, scored=scored, cost=torch.zeros(len(texts)), k=1, gt_boxes=gts)


def test_empty_answers_everywhere_score_zero_on_the_prompts_with_boxes():
    # two positives answered [], two negatives answered []: the overall mean F1 would be 0.5
    m = split_metrics(rollout(["[]", "[]", "[]", "[]"], [[BOX], [BOX], [], []]))
    assert m["f1_positive"] == 0.0 and m["recall_positive"] == 0.0
    assert m["empty_fraction_positive"] == 1.0 and m["hallucination_fraction_negative"] == 0.0


def test_split_values():
    m = split_metrics(rollout([RIGHT, "[]", RIGHT], [[BOX], [BOX], []]))
    assert m["f1_positive"] == 0.5 and m["empty_fraction_positive"] == 0.5
    assert m["hallucination_fraction_negative"] == 1.0


def test_a_side_without_prompts_is_nan():
    m = split_metrics(rollout([RIGHT], [[BOX]]))
    assert m["f1_positive"] == 1.0 and math.isnan(m["hallucination_fraction_negative"])
