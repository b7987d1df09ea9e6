"""What check_data prints: the data as training will see it (trl_ground/train/data_summary.py)."""

import json
import logging
import re

import pytest

from trl_ground.train.data_summary import summarize


def test_the_summary_counts_what_the_file_holds(synthetic_data):
    train, _, root = synthetic_data
    records = json.loads(train.read_text())
    boxes = sum(len(r["objects"]) for r in records)
    text = summarize(train, root)
    assert f"records: {len(records)} valid" in text and f"images found: {len(records)} (all opened and decoded" in text
    per_class = {cls: int(n) for cls, n in re.findall(r"^  (\w[\w ]*?) +(\d+)$", text, re.M)}
    assert sum(per_class.values()) == boxes
    histogram = re.findall(r"^ +(\d+) boxes: (\d+) image\(s\)$", text, re.M)
    assert sum(int(n) for _, n in histogram) == len(records) and sum(int(k) * int(n) for k, n in histogram) == boxes
    assert "tokenizer: byte-level" in text and "longer than max_length" not in text


def test_negatives_add_examples_and_max_length_names_the_long_ones(synthetic_data, caplog):
    train, _, root = synthetic_data
    examples = lambda text: int(re.search(r"^examples \(.*\): (\d+)$", text, re.M).group(1))  # noqa: E731
    plain = summarize(train, root, check_images=False)
    assert "(not opened: --no-image-check)" in plain
    with caplog.at_level(logging.WARNING, logger="trl_ground.train.data_summary"):
        text = summarize(train, root, add_negatives=True, max_length=20)
    assert examples(text) > examples(plain) and "with negatives" in text
    assert re.search(r"longer than max_length 20: \d+ examples \(named in the warning\)", text)
    assert any("longer than max_length 20 tokens" in r.getMessage() for r in caplog.records)


def test_a_bad_record_is_named_or_skipped(synthetic_data, tmp_path):
    train, _, root = synthetic_data
    records = json.loads(train.read_text())
    records[1]["objects"][0]["bbox_aabb"] = [0.5, 0.5, 0.1, 0.1]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(records))
    with pytest.raises(ValueError, match="record 1"):
        summarize(bad, root)
    text = summarize(bad, root, on_bad_record="skip")
    assert f"records: {len(records) - 1} valid, 1 skipped" in text and "first skipped: " in text
