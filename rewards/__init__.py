"""Box maths and grounding scores (numpy + scipy only; never imports torch).

Boxes are ``(N, 4)`` float arrays, xyxy, normalized to [0, 1] of the image's width and
height. Qwen3-VL's 0..1000 integers are converted only by :func:`parse_boxes` (answer ->
boxes) and :func:`to_qwen_answer` (boxes -> answer).
"""

from .boxes import as_boxes, clip_boxes, giou_matrix, iou_matrix, valid_box_mask
from .dense import DenseScore, dense_score
from .matching import MATCH_METHODS, check_matching, greedy_match, hungarian_match, match_iou
from .parsing import COORD_SPACES, ParsedAnswer, parse_boxes, to_qwen_answer
from .scoring import ScoredAnswer, score_answers
from .settings import COSTS, ScoringSettings
from .terms import GroundingTerms, grounding_terms

__all__ = [
    "COORD_SPACES",
    "COSTS",
    "DenseScore",
    "GroundingTerms",
    "MATCH_METHODS",
    "ParsedAnswer",
    "ScoredAnswer",
    "ScoringSettings",
    "as_boxes",
    "check_matching",
    "clip_boxes",
    "dense_score",
    "giou_matrix",
    "greedy_match",
    "grounding_terms",
    "hungarian_match",
    "iou_matrix",
    "match_iou",
    "parse_boxes",
    "score_answers",
    "to_qwen_answer",
    "valid_box_mask",
]
