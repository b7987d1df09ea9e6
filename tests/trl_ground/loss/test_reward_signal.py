import pytest

from rewards import ScoringSettings
from trl_ground.loss.reward_signal import DEFAULT_VARIANTS, signal_report

BOX = [0.1, 0.1, 0.3, 0.3]
RIGHT = '[{"bbox_2d": [100, 100, 300, 300]}]'
WRONG = '[{"bbox_2d": [700, 700, 900, 900]}]'


COUNTS = ScoringSettings(cost="counts")


def test_empty_answer_beats_a_wrong_box_under_the_counts_cost():
    # prompt 1 (one box): [] vs a wrong box; prompt 2 (one box): the right box vs []; prompt 3 (negative): [] twice
    texts = ["[]", WRONG, RIGHT, "[]", "[]", "[]"]
    report = signal_report(texts, [[BOX], [BOX], []], k=2, settings=COUNTS)
    pos, neg = report["positives"], report["negatives"]
    assert pos["prompts"] == 2 and neg["prompts"] == 1
    assert pos["empty_fraction"] == 0.5
    assert pos["cost_empty"] == 2.0  # iou_loss 1 + one missed box
    assert pos["cost_boxes"] == pytest.approx((2.5 + 0.0) / 2)  # wrong: 1 + 0.5 fp + 1 fn; right: 0
    assert pos["empty_wins"] == 0.5  # [] is cheapest in prompt 1, not in prompt 2
    assert pos["advantage_empty"] == pytest.approx(((2.0 - 2.5) + (2.0 - 0.0)) / 2)
    assert neg["empty_fraction"] == 1.0 and neg["cost_boxes"] is None and neg["empty_wins"] is None
    assert report["zero_spread_fraction"] == pytest.approx(1 / 3, abs=1e-4)  # rounded to 4 places


def test_variants_change_the_incentive():
    texts = ["[]", WRONG]
    no_fp = signal_report(texts, [[BOX]], k=2, settings=ScoringSettings(cost="counts", fp_loss_weight=0.0), name="no_fp")
    assert no_fp["zero_spread_fraction"] == 1.0 and no_fp["variant"] == "no_fp"  # a wrong box now costs what [] costs
    near = '[{"bbox_2d": [150, 150, 350, 350]}]'  # IoU with BOX ~0.39: a near miss
    loose = signal_report(["[]", near], [[BOX]], k=2, settings=ScoringSettings(cost="counts", iou_threshold=0.1))
    assert loose["positives"]["empty_wins"] == 0.0  # matched from IoU 0.1, the near miss beats []
    assert {"counts", "counts_iou0.1"} <= set(DEFAULT_VARIANTS)


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="multiple of K"):
        signal_report(["[]"] * 3, [[], []], k=2)
    with pytest.raises(ValueError, match="ground truths"):
        signal_report(["[]"] * 4, [[]], k=2)


def test_check_reward_signal_command_samples_and_reports(tiny_model_dir, synthetic_data, tmp_path, capsys):
    import json

    from trl_ground.cli.check_reward_signal import main

    train, _, root = synthetic_data
    out = tmp_path / "signal.json"
    assert main(["--model", str(tiny_model_dir), "--test-json", str(train), "--img-root", str(root), "--add-negatives", "--limit", "4",
                 "--k", "2", "--temperature", "0.7", "1.0", "--max-new-tokens", "12", "--max-pixels", str(64 * 64), "--out", str(out)]) == 0
    stdout = capsys.readouterr().out
    reports = json.loads(out.read_text())
    assert [(x["temperature"], x["variant"]) for x in reports] == [(t, v) for t in (0.7, 1.0) for v in DEFAULT_VARIANTS]
    for x in reports:
        assert x["k"] == 2 and x["positives"]["prompts"] + x["negatives"]["prompts"] == 4
        assert 0.0 <= x["zero_spread_fraction"] <= 1.0
    assert "zero_spread_fraction" in stdout and "positives.empty_wins" in stdout and "counts" in stdout
    assert "signal" in stdout.strip().splitlines()[-2]  # the conclusion, before the path of the JSON


def test_conclusion_says_what_the_signal_will_teach():
    from trl_ground.loss.reward_signal import conclusion

    def report(texts, gts, k=2, temperature=1.0):
        return {"temperature": temperature, "k": k, **signal_report(texts, gts, k, COUNTS, "counts")}

    same = [report(["[]", "[]", "[]", "[]"], [[BOX], [BOX]])]
    assert conclusion(same).startswith("No learning signal under the 'counts' cost")
    silence = [report(["[]", WRONG, "[]", WRONG], [[BOX], [BOX]])]
    assert conclusion(silence).startswith("The signal favours silence") and "100%" in conclusion(silence)
    good = [report([RIGHT, "[]", RIGHT, WRONG], [[BOX], [BOX]])]
    assert conclusion(good).startswith("There is a learning signal") and "can be turned on" in conclusion(good)
    assert conclusion([]) == "No report: nothing was sampled."
