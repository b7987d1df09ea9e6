"""The evaluation scores every ground-truth query and cannot be flattered by an incomplete,
duplicated, mismatched or mis-scaled predictions file."""

import json
import logging

import numpy as np
import pytest

from trl_ground.config.data import DataArguments
from trl_ground.data.dataset import build_examples
from trl_ground.data.records import load_records
from trl_ground.inference.evaluate import evaluate, markdown_report
from trl_ground.inference.metrics import answer_statistics, duplicate_boxes

SHIP_A, SHIP_B, CAR = [0.1, 0.1, 0.3, 0.3], [0.5, 0.5, 0.7, 0.7], [0.7, 0.1, 0.9, 0.2]


@pytest.fixture()
def gt(tmp_path):
    """11 images: ships (1 or 2, unique when alone) on every one, a car on every third."""
    records = []
    for k in range(11):
        objects = [{"class": "ship", "bbox_aabb": SHIP_A, "is_unique": k % 2 == 0, "obj_size": "small", "obj_position": "top left"}]
        if k % 2:
            objects.append({"class": "ship", "bbox_aabb": SHIP_B, "is_unique": False})
        if k % 3 == 0:
            objects.append({"class": "car", "bbox_aabb": CAR, "is_unique": True, "obj_size": "large", "obj_position": "top right"})
        records.append({"image": f"i{k:02d}.png", "objects": objects})
    path = tmp_path / "test.json"
    path.write_text(json.dumps(records))
    return path


def answers(gt_path, prompt_mode="primary", add_negatives=False):
    """Perfect answers in ``predict_bbox.py``'s output format, one per query."""
    records, _ = load_records(gt_path, gt_path.parent, require_images=False)
    rows = build_examples(records, DataArguments(prompt_mode=prompt_mode, add_negatives=add_negatives))
    return [{"image": r["image_id"], "class": r["class"], "query": r["prompt"][-1]["content"], "mode": r["mode"],
             "is_unique": r["is_unique"], "boxes": r["gt_boxes"], "scores": [0.9] * len(r["gt_boxes"]),
             "valid_json": True, "truncated": False, "num_tokens": 10 + len(r["gt_boxes"])} for r in rows]


def score(tmp_path, gt_path, preds, **kw):
    path = tmp_path / "pred.json"
    path.write_text(json.dumps(preds))
    return evaluate(path, gt_path, **kw)


def test_complete_perfect_answers_score_one_and_report_no_problem(gt, tmp_path, caplog):
    m = score(tmp_path, gt, answers(gt))
    assert (m["precision"], m["recall"], m["f1"], m["ap50"]) == (1.0, 1.0, 1.0, 1.0)
    assert m["prompt_mode"] == "primary" and m["add_negatives"] is False
    c = m["counts"]
    assert c["queries"] == c["predictions"] == c["examples"] == 11
    assert c["missing_predictions"] == c["unknown_predictions"] == c["duplicate_predictions"] == c["out_of_range_predictions"] == 0
    assert "evaluate" not in caplog.text


def test_half_the_predictions_cannot_score_perfectly(gt, tmp_path, caplog):
    preds = answers(gt)[:5]
    m = score(tmp_path, gt, preds)
    gt_boxes = sum(len(p["boxes"]) for p in answers(gt))
    assert m["counts"]["missing_predictions"] == 6 and m["counts"]["queries"] == 11
    assert m["recall"] == pytest.approx(sum(len(p["boxes"]) for p in preds) / gt_boxes)
    assert m["precision"] == 1.0 and m["f1"] < 0.7 and m["ap50"] < 0.7
    assert m["with_boxes"]["empty_fraction_positive"] == pytest.approx(6 / 11)
    assert "6 of 11 ground-truth queries have no prediction" in caplog.text and str(tmp_path / "pred.json") in caplog.text


@pytest.mark.parametrize("prompt_mode, queries", [("per_class", 15), ("referring", 10)])
def test_missing_predictions_count_in_every_prompt_mode(gt, tmp_path, prompt_mode, queries):
    preds = answers(gt, prompt_mode)
    assert len(preds) == queries
    m = score(tmp_path, gt, preds[:3])
    assert m["prompt_mode"] == prompt_mode  # read from the predictions' mode fields
    assert m["counts"]["missing_predictions"] == queries - 3 and m["counts"]["examples"] == queries
    assert m["recall"] < 0.5
    if prompt_mode == "referring":
        assert m["referring"]["unique"]["count"] == queries and m["referring"]["unique"]["acc@0.5"] == pytest.approx(3 / queries)


def test_empty_list_and_empty_file_are_errors_naming_the_file(gt, tmp_path):
    with pytest.raises(ValueError, match=r"pred\.json: holds no predictions"):
        score(tmp_path, gt, [])
    (tmp_path / "blank.json").write_text("")
    with pytest.raises(ValueError, match=r"blank\.json: the predictions file is empty"):
        evaluate(tmp_path / "blank.json", gt)
    with pytest.raises(ValueError, match=r"nope\.json: predictions file not found"):
        evaluate(tmp_path / "nope.json", gt)


def test_predictions_for_another_dataset_are_an_error(gt, tmp_path):
    preds = [{**p, "image": "other_" + p["image"]} for p in answers(gt)]
    with pytest.raises(ValueError, match=r"none of its 11 predictions answers a query of .*test\.json.*'other_i00\.png' is not in"):
        score(tmp_path, gt, preds)


def test_duplicates_are_counted_and_not_scored(gt, tmp_path, caplog):
    preds = answers(gt)
    wrong_copies = [{**p, "boxes": [[0.0, 0.9, 0.05, 0.95]], "scores": [1.0]} for p in preds[:4]]
    m = score(tmp_path, gt, preds + wrong_copies)
    assert m["counts"]["duplicate_predictions"] == 4 and m["f1"] == 1.0  # the first answer counts
    assert "4 duplicate prediction(s)" in caplog.text and "entry 11" in caplog.text


def test_extra_images_and_queries_are_counted_and_not_scored(gt, tmp_path, caplog):
    preds = answers(gt)
    extra = [{"image": "zz.png", "class": "ship", "boxes": [SHIP_A], "mode": "primary"},
             {"image": "i03.png", "class": "car", "boxes": [CAR], "mode": "primary"}]  # ship is i03's primary class
    m = score(tmp_path, gt, preds + extra)
    assert m["counts"]["unknown_predictions"] == 2 and m["f1"] == 1.0 and m["counts"]["examples"] == 11
    assert "2 prediction(s) answer no ground-truth query" in caplog.text and "'zz.png' is not in" in caplog.text


def test_coordinates_in_0_to_1000_are_reported(gt, tmp_path, caplog):
    preds = [{**p, "boxes": (np.asarray(p["boxes"]) * 1000).tolist()} for p in answers(gt)]
    m = score(tmp_path, gt, preds)
    assert m["counts"]["out_of_range_predictions"] == 11 and m["f1"] == 0.0
    assert "outside [0, 1]" in caplog.text and "0..1000" in caplog.text
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1  # one line per kind of problem


def test_malformed_entries_name_file_entry_and_field(gt, tmp_path):
    good = answers(gt)
    for bad, message in [
        ({k: v for k, v in good[1].items() if k != "boxes"}, "entry 1, field 'boxes': missing"),
        ({**good[1], "boxes": [[0.1, 0.2, 0.3]]}, "entry 1, field 'boxes[0]': expected 4 numbers"),
        ({**good[1], "boxes": [[0.1, float("nan"), 0.3, 0.4]]}, "finite numbers"),
        ({**good[1], "scores": [0.5, 0.5, 0.5]}, "entry 1, field 'scores'"),
        ({**good[1], "mode": "everything"}, "entry 1, field 'mode'"),
        ({**good[1], "image": None}, "entry 1, field 'image': missing"),
    ]:
        with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
            score(tmp_path, gt, [good[0], bad])


def test_prompt_mode_must_agree_with_the_predictions(gt, tmp_path):
    with pytest.raises(ValueError, match="made in prompt mode 'primary'.*pass --prompt-mode primary"):
        score(tmp_path, gt, answers(gt), prompt_mode="per_class")
    with pytest.raises(ValueError, match="mix the prompt modes"):
        score(tmp_path, gt, answers(gt)[:2] + answers(gt, "referring")[:2])
    # a file without mode fields is scored in the mode asked for (default: the training default)
    bare = [{k: v for k, v in p.items() if k != "mode"} for p in answers(gt, "per_class")]
    assert score(tmp_path, gt, bare)["counts"]["queries"] == 11
    assert score(tmp_path, gt, bare, prompt_mode="per_class")["f1"] == 1.0


def test_negatives_are_expected_scored_and_split(gt, tmp_path, caplog):
    preds = answers(gt, add_negatives=True)
    negatives = [p for p in preds if p["mode"] == "negative"]
    assert len(negatives) == 7  # the images without a car
    negatives[0]["boxes"], negatives[0]["scores"] = [CAR], [0.5]  # a hallucinated box
    m = score(tmp_path, gt, [p for p in preds if p is not negatives[1]])
    assert m["add_negatives"] is True and m["counts"]["missing_predictions"] == 1
    assert m["without_boxes"] == {"queries": 7, "pred_boxes": 1, "hallucination_fraction_negative": pytest.approx(1 / 7)}
    assert m["hallucination_fraction_negative"] == pytest.approx(1 / 7)
    assert m["with_boxes"]["f1"] == 1.0 and m["with_boxes"]["ap50"] == 1.0 and m["with_boxes"]["queries"] == 11
    assert m["precision"] < 1.0 and m["counts"]["fp"] == 1
    assert "negative query" in caplog.text
    # without the option, the negatives present are still scored but none is expected
    m = score(tmp_path, gt, [p for p in preds if p is not negatives[1]], add_negatives=False)
    assert m["counts"]["missing_predictions"] == 0 and m["without_boxes"]["queries"] == 6


def test_answer_statistics_hand_computed(gt, tmp_path):
    preds = answers(gt)
    preds[0]["boxes"], preds[0]["scores"], preds[0]["num_tokens"] = [SHIP_A, [0.1, 0.1, 0.3, 0.31], SHIP_B], [1, 1, 1], 40
    preds[1]["boxes"], preds[1]["scores"], preds[1]["valid_json"] = [], [], False
    m = score(tmp_path, gt, preds)
    n_boxes = sum(len(p["boxes"]) for p in preds)
    assert m["duplicate_fraction"] == pytest.approx(1 / n_boxes)  # one box repeats an earlier one (IoU 0.95)
    assert m["unparseable_fraction"] == pytest.approx(1 / 11)
    assert m["empty_fraction_positive"] == pytest.approx(1 / 11)
    assert m["tokens_per_answer"] == pytest.approx(np.mean([p["num_tokens"] for p in preds]))
    assert m["without_boxes"]["hallucination_fraction_negative"] is None  # no negative query
    assert "duplicate boxes" in markdown_report(m)


def test_duplicate_boxes_counts_later_boxes_only():
    boxes = np.array([SHIP_A, [0.1, 0.1, 0.3, 0.31], [0.1, 0.1, 0.3, 0.3], SHIP_B, [0.1, 0.1, 0.2, 0.3]])
    assert duplicate_boxes(boxes) == 2  # the 2nd and 3rd repeat the 1st; the last has IoU 0.5
    assert duplicate_boxes(boxes[:1]) == 0 and duplicate_boxes(np.zeros((0, 4))) == 0
    assert answer_statistics([])["duplicate_fraction"] is None


def test_training_format_file_missing_records_counts_them(gt, tmp_path):
    records = json.loads(gt.read_text())
    half = tmp_path / "half.json"
    half.write_text(json.dumps(records[:5]))
    m = evaluate(half, gt)
    assert m["prompt_mode"] == "per_class" and m["counts"]["missing_predictions"] == 15 - 7
    assert m["recall"] < 0.6
    assert evaluate(gt, gt)["f1"] == 1.0


def test_command_line_warns_in_one_line_each_and_fails_in_one_line(gt, tmp_path, capsys):
    from trl_ground.cli.eval_bbox import main

    preds = answers(gt)[:5] + [{**answers(gt)[0], "boxes": [[100, 100, 300, 300]], "scores": [1.0]}]
    (tmp_path / "p.json").write_text(json.dumps(preds))
    assert main(["--pred", str(tmp_path / "p.json"), "--gt", str(gt), "--out", str(tmp_path / "m.json")]) == 0
    captured = capsys.readouterr()
    *warnings, where = captured.err.splitlines()
    assert len(warnings) == 3 and all(line.startswith("warning: ") for line in warnings)  # missing, duplicate, out of range
    assert where == f"metrics -> {tmp_path / 'm.json'}" and "metrics ->" not in captured.out  # stdout: the report alone
    counts = json.loads((tmp_path / "m.json").read_text())["counts"]
    assert (counts["missing_predictions"], counts["duplicate_predictions"], counts["out_of_range_predictions"]) == (6, 1, 1)

    (tmp_path / "empty.json").write_text("[]")
    assert main(["--pred", str(tmp_path / "empty.json"), "--gt", str(gt), "--out", str(tmp_path / "m2.json")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [f"error: {tmp_path / 'empty.json'}: holds no predictions (an empty list): nothing to score"]
    assert not (tmp_path / "m2.json").exists()


def test_script_exits_non_zero_without_traceback(gt, tmp_path):
    import subprocess
    import sys

    from tests.helpers import REPO

    (tmp_path / "empty.json").write_text("")
    r = subprocess.run([sys.executable, "scripts/eval_bbox.py", "--pred", str(tmp_path / "empty.json"), "--gt", str(gt),
                        "--out", str(tmp_path / "m.json")], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [f"error: {tmp_path / 'empty.json'}: the predictions file is empty"]
