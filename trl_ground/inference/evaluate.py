"""Score predictions (``predict_bbox.py``'s outputs, or a file in the training format)
against a ground-truth JSON.

**Which queries are scored.** Every query of the ground truth, built exactly as
``predict_bbox.py --test-json`` builds them (:func:`trl_ground.data.dataset.build_examples`) for a
prompt mode and the negatives option:

- ``prompt_mode``: the argument if given; else the mode the predictions were made with, read
  from their ``mode`` fields (``predict_bbox.py`` writes them; one file holds one mode); else
  the training default ``primary``. A file in the training format answers every class, so it
  defaults to ``per_class``. A file whose ``mode`` fields disagree with each other or with
  the argument is an error.
- ``add_negatives``: the argument if given; else True when any prediction has the mode
  ``negative``. With it, every image that lacks some class of the ground truth expects one
  negative query (a class absent from it, target ``[]``), answered by any prediction for an
  absent class. Pass ``add_negatives=False`` when the predictions were made with
  ``negative_fraction < 1``: the negatives present are still scored, none is expected.

**Matching.** A prediction answers the query with the same image and class (referring
queries: the same image and query text); a prediction for a class absent from its image
(mode ``negative``, or no mode) is a negative query, ground truth ``[]``. Then:

- a query without a prediction counts as an empty answer (its boxes are false negatives) and
  is counted in ``counts.missing_predictions``;
- a prediction for an image the ground truth does not hold, or for a query that does not
  exist in the prompt mode (e.g. a non-primary class in ``primary`` mode), is not scored
  (``counts.unknown_predictions``);
- a second prediction for an answered query is not scored; the first one counts
  (``counts.duplicate_predictions``);
- a prediction with a coordinate outside [0, 1] is scored as written (it will mostly miss)
  and counted (``counts.out_of_range_predictions``): 0..1000 coordinates are the usual cause.

Each of these four, when non-zero, is also one warning line (logger ``trl_ground.inference.evaluate``).
An empty predictions file, or one of which no prediction answers a query, is a
``ValueError`` naming the file. A training-format file is a complete statement about every
image it lists: a query on a listed image that has no boxes of the queried class is
answered ``[]``; its classes that are not queried are ignored.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..config.data import DataArguments
from ..data.dataset import build_examples
from ..data.records import BOX_TOLERANCE, load_records
from .metrics import Example, answer_statistics, count_metrics, mean_average_precision, query_counts
from .predictions import Prediction, PredictionFile, read_predictions

__all__ = ["evaluate", "markdown_report", "resolve_prompt_settings"]

logger = logging.getLogger(__name__)

# The prompt mode that produces each positive ``mode`` value of a prediction.
_PROMPT_MODE_OF = {"primary": "primary", "class": "per_class", "referring": "referring"}


def resolve_prompt_settings(preds: PredictionFile, prompt_mode: str | None, add_negatives: bool | None) -> tuple[str, bool]:
    """``(prompt_mode, add_negatives)`` under which ``preds`` are scored (module docstring).

    Raises:
        ValueError naming the file when its ``mode`` fields mix prompt modes or contradict
        ``prompt_mode``, or when a training-format file is to be scored on referring queries.
    """
    found = sorted({_PROMPT_MODE_OF[p.mode] for p in preds.entries if p.mode in _PROMPT_MODE_OF})
    if len(found) > 1:
        raise ValueError(f"{preds.path}: the predictions mix the prompt modes {found}; score each mode from its own file")
    if prompt_mode is not None and found and found[0] != prompt_mode:
        raise ValueError(
            f"{preds.path}: the predictions were made in prompt mode {found[0]!r} (their 'mode' fields), "
            f"not {prompt_mode!r}; pass --prompt-mode {found[0]}"
        )
    default = "per_class" if preds.training_format else "primary"
    mode = prompt_mode or (found[0] if found else default)
    if preds.training_format and mode == "referring":
        raise ValueError(f"{preds.path}: a file in the training format cannot answer referring queries")
    if add_negatives is None:
        add_negatives = any(p.mode == "negative" for p in preds.entries)
    return mode, bool(add_negatives)


def _row_key(row: dict) -> tuple:
    if row["mode"] == "referring":
        return ("referring", row["image_id"], row["prompt"][-1]["content"])
    return ("class", row["image_id"], row["class"])


def _example(key: tuple, cls: str, gt, pred: Prediction | None, mode: str, is_unique=None) -> Example:
    """An answered query, or (``pred`` None) an unanswered one scored as an empty answer."""
    gt = np.asarray(gt, dtype=np.float64).reshape(-1, 4)
    if pred is None:
        return Example(str(key), cls, gt, np.zeros((0, 4)), np.zeros(0), mode, is_unique, answered=False)
    unique = is_unique if is_unique is not None else pred.is_unique  # the ground truth's flag first
    return Example(str(key), cls, gt, pred.boxes, pred.scores, mode, unique, pred.valid_json, pred.truncated,
                   num_tokens=pred.num_tokens)


class _Matcher:
    """Assigns the predictions of a file to the ground truth's queries (module docstring)."""

    def __init__(self, records, gt_json, prompt_mode: str, add_negatives: bool):
        self.gt_json, self.prompt_mode = gt_json, prompt_mode
        self.by_image = {r.image: r for r in records}
        rows = build_examples(records, DataArguments(prompt_mode=prompt_mode, add_negatives=add_negatives))
        self.queries = {_row_key(r): r for r in rows if r["mode"] != "negative"}
        self.negative_slots = {r["image_id"]: r for r in rows if r["mode"] == "negative"}
        self.answered: dict[tuple, Prediction] = {}
        self.answered_negative_images: set[str] = set()
        self.examples: list[Example] = []
        self.unknown: list[tuple[Prediction, str]] = []
        self.duplicates: list[Prediction] = []

    def _key(self, p: Prediction, training_format: bool) -> tuple[tuple | None, str]:
        """``(key, "")`` of the query ``p`` answers, or ``(None, why not)``."""
        rec = self.by_image.get(p.image)
        if rec is None:
            return None, f"image {p.image!r} is not in {self.gt_json}"
        if p.mode == "referring":
            key = ("referring", p.image, p.query)
            return (key, "") if key in self.queries else (None, f"no referring query {p.query!r} on image {p.image!r}")
        if p.cls not in rec.classes:
            if p.mode in (None, "negative"):
                return ("negative", p.image, p.cls), ""
            return None, f"image {p.image!r} has no {p.cls!r} (mode {p.mode!r} asks for a class it holds)"
        if p.mode == "negative":
            return None, f"a negative query for {p.cls!r}, which image {p.image!r} holds"
        key = ("class", p.image, p.cls)
        if key in self.queries:
            return key, ""
        return None, "" if training_format else f"{p.cls!r} on image {p.image!r} is not a query of prompt mode {self.prompt_mode!r}"

    def add(self, p: Prediction, training_format: bool) -> None:
        key, why = self._key(p, training_format)
        if key is None:
            if why:  # a training-format table also lists classes that are not queried: not an error
                self.unknown.append((p, why))
            return
        if key in self.answered:
            self.duplicates.append(p)
            return
        self.answered[key] = p
        if key[0] == "negative":
            self.answered_negative_images.add(p.image)
            self.examples.append(_example(key, p.cls, np.zeros((0, 4)), p, "negative"))
        else:
            row = self.queries[key]
            self.examples.append(_example(key, row["class"], row["gt_boxes"], p, row["mode"], row["is_unique"]))

    def unanswered(self, listed_images: frozenset, training_format: bool) -> tuple[list[Example], list[str]]:
        """The queries nobody answered, as examples, and the missing ones described. A
        training-format file answers ``[]`` for the queries of every image it lists."""
        out, missing = [], []

        def empty(image):
            if not training_format or image not in listed_images:
                return None
            return Prediction(-1, image, "", np.zeros((0, 4)), np.zeros(0))

        for key, row in self.queries.items():
            if key not in self.answered:
                pred = empty(row["image_id"])
                out.append(_example(key, row["class"], row["gt_boxes"], pred, row["mode"], row["is_unique"]))
                if pred is None:
                    missing.append(f"image {row['image_id']!r}, {row['mode']} query for {row['class']!r}")
        for image, row in self.negative_slots.items():
            if image not in self.answered_negative_images:
                pred = empty(image)
                out.append(_example(("negative", image, row["class"]), row["class"], np.zeros((0, 4)), pred, "negative"))
                if pred is None:
                    missing.append(f"image {image!r}, negative query")
        return out, missing


def evaluate(
    pred_path, gt_json, img_root=None, prompt_mode: str | None = None, add_negatives: bool | None = None, per_query: bool = False
) -> dict:
    """Score ``pred_path`` against every query of ``gt_json`` (see the module docstring).

    Args:
        pred_path: predictions file (``predict_bbox.py``'s outputs or the training format).
        gt_json: ground truth in the training format (its images need not exist).
        img_root: image root of ``gt_json`` (default: its folder); only paths are checked.
        prompt_mode: ``primary`` / ``per_class`` / ``referring``, or None: from the predictions.
        add_negatives: expect one negative query per image, or None: from the predictions.
        per_query: also return ``per_query``, the counts of every query sorted by its key
            (:func:`trl_ground.inference.metrics.query_counts`), for paired comparisons of two files.
    Returns:
        The metrics dict written to ``metrics.json`` (top-level ``precision``, ``recall``,
        ``f1``, ``mean_iou``, ``ap50`` at IoU 0.5 over all queries; see :func:`_report`).
    Raises:
        ValueError naming the file: unreadable or malformed predictions, none at all, none
        that answers a query of ``gt_json``, or prompt settings that contradict the file.
    """
    preds = read_predictions(pred_path)
    if not preds.entries and not preds.images:
        raise ValueError(f"{pred_path}: holds no predictions (an empty list): nothing to score")
    prompt_mode, add_negatives = resolve_prompt_settings(preds, prompt_mode, add_negatives)
    records, _ = load_records(gt_json, img_root or Path(gt_json).parent, require_images=False)
    matcher = _Matcher(records, gt_json, prompt_mode, add_negatives)
    for p in preds.entries:
        matcher.add(p, preds.training_format)
    answered = len(matcher.examples)
    if preds.training_format:
        answered += sum(1 for r in records if r.image in preds.images)
    if answered == 0:
        why = f"; e.g. entry {matcher.unknown[0][0].index}: {matcher.unknown[0][1]}" if matcher.unknown else ""
        raise ValueError(
            f"{pred_path}: none of its {len(preds.entries)} predictions answers a query of {gt_json} "
            f"(prompt mode {prompt_mode!r}{', with negatives' if add_negatives else ''}){why}"
        )
    rest, missing = matcher.unanswered(preds.images, preds.training_format)
    examples = matcher.examples + rest
    out_of_range = [p for p in preds.entries if p.out_of_range]
    _warn(pred_path, examples, missing, matcher, out_of_range)
    metrics = _report(examples)
    metrics["prompt_mode"], metrics["add_negatives"] = prompt_mode, add_negatives
    metrics["counts"].update(
        predictions=len(preds.entries),
        queries=len(examples),
        missing_predictions=len(missing),
        unknown_predictions=len(matcher.unknown),
        duplicate_predictions=len(matcher.duplicates),
        out_of_range_predictions=len(out_of_range),
    )
    if per_query:
        metrics["per_query"] = query_counts(sorted(examples, key=lambda e: e.key))
    return metrics


def _warn(path, examples, missing, matcher: _Matcher, out_of_range: list[Prediction]) -> None:
    """One warning line per kind of problem, with the first case as an example."""
    if missing:
        logger.warning("%s: %d of %d ground-truth queries have no prediction (e.g. %s); they count as empty answers",
                       path, len(missing), len(examples), missing[0])
    if matcher.unknown:
        p, why = matcher.unknown[0]
        logger.warning("%s: %d prediction(s) answer no ground-truth query and are not scored (e.g. entry %d: %s)",
                       path, len(matcher.unknown), p.index, why)
    if matcher.duplicates:
        logger.warning("%s: %d duplicate prediction(s) for an already answered query are not scored (e.g. entry %d, image %r)",
                       path, len(matcher.duplicates), matcher.duplicates[0].index, matcher.duplicates[0].image)
    if out_of_range:
        p = out_of_range[0]
        box = next(b for b in p.boxes.tolist() if min(b) < -BOX_TOLERANCE or max(b) > 1 + BOX_TOLERANCE)
        hint = "; were they written in 0..1000? boxes must be normalized to [0, 1]" if max(box) > 2 else ""
        logger.warning("%s: %d prediction(s) have coordinates outside [0, 1], scored as written (e.g. entry %d: %s)%s",
                       path, len(out_of_range), p.index, box, hint)


def _report(examples: list[Example]) -> dict:
    """The metrics of ``examples``: at IoU 0.5 over all queries (top level) and at 0.75,
    split by prompt type (``with_boxes``: queries whose ground truth has boxes;
    ``without_boxes``: queries whose answer should be ``[]``), per class, referring
    accuracy and counts. See :func:`trl_ground.inference.metrics.answer_statistics` for the fractions."""
    at50, at75 = count_metrics(examples, 0.5), count_metrics(examples, 0.75)
    ap50, ap50_per_class = mean_average_precision(examples, 0.5)
    ap75, _ = mean_average_precision(examples, 0.75)
    per_class = {}
    for cls in sorted({ex.cls for ex in examples}):
        sub = [ex for ex in examples if ex.cls == cls]
        m = count_metrics(sub, 0.5)
        per_class[cls] = {**{k: m[k] for k in ("precision", "recall", "f1", "mean_iou")}, "ap50": ap50_per_class.get(cls),
                          "gt_boxes": int(sum(len(e.gt) for e in sub)), "pred_boxes": int(sum(len(e.pred) for e in sub))}
    stats = answer_statistics(examples)
    return {
        "precision": at50["precision"],
        "recall": at50["recall"],
        "f1": at50["f1"],
        "mean_iou": at50["mean_iou"],
        "ap50": ap50,
        "ap75": ap75,
        "at_iou_0.75": {k: at75[k] for k in ("precision", "recall", "f1", "mean_iou")},
        **stats,
        "counts": {
            "examples": len(examples),
            "tp": at50["tp"], "fp": at50["fp"], "fn": at50["fn"],
            "unparseable_answers": sum(1 for e in examples if not e.valid_json and len(e.pred) == 0),
            "truncated_answers": sum(1 for e in examples if e.truncated),
        },
        "referring": _referring_accuracy(examples),
        "per_class": per_class,
    }


def _referring_accuracy(examples: list[Example]) -> dict:
    """Acc@0.5 of referring queries (the highest-scoring box against the one target), split
    into unique and non-unique objects as VRSBench reports."""
    from rewards import iou_matrix

    out = {}
    for name, flag in (("unique", True), ("non_unique", False)):
        sub = [e for e in examples if e.mode == "referring" and bool(e.is_unique) == flag]
        hits = [len(e.pred) > 0 and iou_matrix(e.pred[[int(np.argmax(e.scores))]], e.gt).max() >= 0.5 for e in sub if len(e.gt)]
        out[name] = {"acc@0.5": (float(np.mean(hits)) if hits else None), "count": len(hits)}
    return out


def markdown_report(metrics: dict) -> str:
    """The metrics as Markdown tables."""

    def fmt(v):
        return "-" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)

    lines = [
        "| IoU | precision | recall | F1 | mean IoU | AP |",
        "| --- | --- | --- | --- | --- | --- |",
        f"| 0.50 | {fmt(metrics['precision'])} | {fmt(metrics['recall'])} | {fmt(metrics['f1'])} | {fmt(metrics['mean_iou'])} | {fmt(metrics['ap50'])} |",
        "| 0.75 | " + " | ".join(fmt(metrics["at_iou_0.75"][k]) for k in ("precision", "recall", "f1", "mean_iou")) + f" | {fmt(metrics['ap75'])} |",
        "",
        "| class | precision | recall | F1 | mean IoU | AP50 | GT boxes | predicted |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for cls, m in metrics["per_class"].items():
        lines.append(f"| {cls} | " + " | ".join(fmt(m[k]) for k in ("precision", "recall", "f1", "mean_iou", "ap50", "gt_boxes", "pred_boxes")) + " |")
    c, r, wb, nb = metrics["counts"], metrics["referring"], metrics["with_boxes"], metrics["without_boxes"]
    lines += [
        "",
        f"queries with boxes {wb['queries']}: F1@0.5 {fmt(wb['f1'])}, precision {fmt(wb['precision'])}, recall {fmt(wb['recall'])}, "
        f"mean IoU {fmt(wb['mean_iou'])}, AP50 {fmt(wb['ap50'])}, empty answers {fmt(wb['empty_fraction_positive'])}",
        f"queries without boxes {nb['queries']}: answers with a box {fmt(nb['hallucination_fraction_negative'])}",
        f"unparseable {fmt(metrics['unparseable_fraction'])}, duplicate boxes {fmt(metrics['duplicate_fraction'])}, "
        f"tokens per answer {fmt(metrics['tokens_per_answer'])}",
        f"examples {c['examples']}, unparseable answers {c['unparseable_answers']}, truncated answers {c['truncated_answers']}",
    ]
    problems = {k: c.get(k, 0) for k in ("missing_predictions", "unknown_predictions", "duplicate_predictions", "out_of_range_predictions")}
    if any(problems.values()):
        lines.append(", ".join(f"{k.replace('_', ' ')} {v}" for k, v in problems.items()))
    if r["unique"]["count"] or r["non_unique"]["count"]:
        lines.append(f"referring Acc@0.5: unique {fmt(r['unique']['acc@0.5'])} ({r['unique']['count']}), "
                     f"non-unique {fmt(r['non_unique']['acc@0.5'])} ({r['non_unique']['count']})")
    return "\n".join(lines)
