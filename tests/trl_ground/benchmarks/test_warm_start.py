"""The learning benchmark's warm start as committed files: exported in parts, read back, and
refused when it was trained with other data or model settings."""

import json
from dataclasses import replace

import pytest
import torch
from transformers import AutoModelForImageTextToText

from trl_ground.benchmarks.warm_start import WARM_DIR, export_warm, reuse_warm, unpack_warm
from trl_ground.config.benchmark import LearningBenchSettings


def test_a_warm_model_travels_in_parts_and_is_checked_on_reuse(tiny_model_dir, tmp_path):
    settings = LearningBenchSettings()
    work = tmp_path / "work"
    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir)
    model.save_pretrained(work / WARM_DIR)
    (work / WARM_DIR / "warm_start.json").write_text(json.dumps({"steps": 7, "settings": settings.warm_fingerprint()}))

    parts = export_warm(work, tmp_path / "committed", part_mb=0.2)
    assert len(parts) > 1 and all(p.stat().st_size <= 200_000 for p in parts)
    unpacked = unpack_warm(tmp_path / "committed", tmp_path / "unpacked")
    back = AutoModelForImageTextToText.from_pretrained(unpacked)
    name, weight = next(iter(model.state_dict().items()))
    assert back.state_dict()[name].dtype == torch.bfloat16  # exported in bf16
    torch.testing.assert_close(back.state_dict()[name].float(), weight.to(torch.bfloat16).float())

    row = reuse_warm(tmp_path / "committed", tmp_path / "run", settings)
    assert row["steps"] == 7 and (tmp_path / "run" / WARM_DIR / "config.json").is_file()
    other = replace(settings, data_seed=settings.data_seed + 1)
    with pytest.raises(SystemExit, match="trained with other settings.*data_seed"):
        reuse_warm(tmp_path / "committed", tmp_path / "other", other)
    with pytest.raises(SystemExit, match="neither a warm model"):
        unpack_warm(tmp_path / "nothing", tmp_path / "x")
