"""A user's JSON file read with one-line errors that say what is wrong (trl_ground/data/json_files.py)."""

import re

import pytest

from trl_ground.data.json_files import read_json


def test_valid_json_with_or_without_a_byte_order_mark(tmp_path):
    path = tmp_path / "a.json"
    path.write_text('[{"image": "é.png"}]', encoding="utf-8")
    assert read_json(path) == [{"image": "é.png"}]
    path.write_bytes(b"\xef\xbb\xbf" + '{"a": 1}'.encode())
    assert read_json(path) == {"a": 1}


@pytest.mark.parametrize("content, message", [
    (None, "predictions file not found"),
    (b"", "the predictions file is empty"),
    (b"  \n", "the predictions file is empty"),
    (b'[{"a": 1}, {"b": ', r"invalid JSON at line 1, column 18: Expecting value \(the file looks truncated\)$"),
    (b'[{"a": 1}}\n\n', r"invalid JSON at line 1, column 10: Expecting ',' delimiter$"),
    ('[{"image": "é"}]'.encode("latin-1"), r"not UTF-8 text \(byte 12: b'\\xe9'\); JSON must be UTF-8: re-save"),
])
def test_each_problem_is_one_line_naming_the_file(tmp_path, content, message):
    path = tmp_path / "preds.json"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ValueError, match=f"^{re.escape(str(path))}: {message}") as err:
        read_json(path, "predictions file")
    assert "\n" not in str(err.value)
