"""The trainer commands' command line: ``--config=FILE``, unknown flags and keys reported
before TRL is imported, ``--max-length`` checked against the image tokens, and the
``--tokenizer`` of check-data named as such."""

import json
import subprocess
import sys

from PIL import Image

from tests.helpers import DEMO, REPO, one_line_error
from trl_ground.cli.check_data import main as check_data_main
from trl_ground.cli.sft_ground import main as sft_main
from trl_ground.config.argv import check_names, config_path, known_names, split_config_flag


def test_the_names_known_without_trl_are_the_parsers():
    """What the check before TRL's import accepts is exactly what the full parser accepts."""
    from trl_ground.config import GroundingGRPOConfig, GroundingSFTConfig
    from trl_ground.config.argv import ALIASES
    from trl_ground.config.parser import GroundingParser

    for kind, cls in (("sft", GroundingSFTConfig), ("grpo", GroundingGRPOConfig)):
        flags = {s.lstrip("-").replace("-", "_") for s in GroundingParser(cls)._option_string_actions if s.startswith("--")}
        assert known_names(kind) == flags - {"help"} | set(ALIASES) | {"config", "help_all"}, kind


def test_config_equals_file_is_the_config_file(capsys, tmp_path):
    assert split_config_flag(["--config=a.yaml", "--lr", "1"]) == ["--config", "a.yaml", "--lr", "1"]
    assert config_path(["--config=a.yaml"]) == "a.yaml"
    one_line_error(capsys, sft_main, [f"--config={tmp_path / 'nope.yaml'}"], "nope.yaml: file not found")
    one_line_error(capsys, sft_main, ["--config="], "--config needs a YAML file")
    # parsed as the file, not refused as "unknown option --config"
    one_line_error(capsys, sft_main, [f"--config={DEMO}", "--lora-rr", "3"], "unknown option --lora-rr")


def test_config_equals_file_parses_like_config_file():
    from trl_ground.config import parse_args

    spaced = parse_args(["--config", DEMO, "--output-dir", "x"])
    joined = parse_args([f"--config={DEMO}", "--output-dir", "x"])
    assert spaced[0] == joined[0] and spaced[1] == joined[1] and joined[3].max_steps == 60


def test_names_checked_without_trl():
    check_names(["--config", DEMO, "--lr", "1", "--no-load-in-4bit", "--max_steps=3", "--gradient-checkpointing", "false",
                 "--no-gradient-checkpointing", "--report-to", "none", "--help-all"], "sft", {"lora_r": 2, "batch_size": 1, "env": {}})
    for argv, needle in ((["--lora-rr", "3"], "did you mean --lora-r"), (["--num-generatoins=2"], "did you mean --num-generations")):
        try:
            check_names(argv, "grpo")
        except ValueError as err:
            assert needle in str(err)
        else:
            raise AssertionError(f"{argv} accepted")
    try:
        check_names([], "sft", {"lora_rr": 2}, "my.yaml")
    except ValueError as err:
        assert "unknown key in my.yaml: 'lora_rr' (did you mean lora_r" in str(err)


def test_unknown_flag_reported_before_trl_is_imported():
    """Measured: ~11 s before (TRL imported first), under 1 s now on the development machine.
    Checked by what the process imported, not by a time bound (which fails on a loaded machine)."""
    code = (
        "import sys; from trl_ground.cli.sft_ground import main; rc = main(['--config', sys.argv[1], '--lora-rr', '3']);"
        "print('trl' in sys.modules, 'torch' in sys.modules, 'transformers' in sys.modules, rc)"
    )
    done = subprocess.run([sys.executable, "-c", code, DEMO], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.stdout.split() == ["False", "False", "False", "2"], done.stdout + done.stderr
    assert "unknown option --lora-rr (did you mean --lora-r" in done.stderr


def test_max_length_below_the_image_tokens(capsys, synthetic_data, tiny_model_dir, tmp_path):
    train, test, root = synthetic_data
    own = ["--config", DEMO, "--model", str(tiny_model_dir), "--train-json", str(train), "--eval-json", str(test), "--img-root", str(root),
           "--output-dir", str(tmp_path / "run"), "--make-synthetic-data", "0", "--eval-strategy", "no"]
    # 16384 pixels / (16 x 2)^2 = 16 image tokens: found from the numbers alone
    one_line_error(capsys, sft_main, [*own, "--max-length", "12"], "max_length 12 is below the 16 tokens of an image",
                   "raise --max-length (e.g. 2048)", "--max-pixels")
    # above the image, below the whole prompt: measured with the processor, before the model loads
    one_line_error(capsys, sft_main, [*own, "--max-length", "40"], "max_length 40 is below the", "tokens of a training prompt")


def test_check_data_names_the_tokenizer_flag(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    (tmp_path / "train.json").write_text(json.dumps([{"image": "a.png", "objects": [{"class": "ship", "bbox_aabb": [0.1, 0.1, 0.5, 0.5]}]}]))
    args = ["--train-json", str(tmp_path / "train.json"), "--img-root", str(tmp_path)]
    assert check_data_main([*args, "--tokenizer", "someone/not-downloaded"]) == 2
    err = capsys.readouterr().err
    assert "tokenizer someone/not-downloaded is not in the local Hugging Face cache" in err
    assert "point --tokenizer at that directory" in err and "--model" not in err


def test_check_data_takes_a_processor_folder_without_config_json(capsys, tmp_path, tiny_model_dir):
    import shutil

    processor = tmp_path / "processor"
    shutil.copytree(tiny_model_dir, processor, ignore=shutil.ignore_patterns("config.json", "*.safetensors"))
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    (tmp_path / "train.json").write_text(json.dumps([{"image": "a.png", "objects": [{"class": "ship", "bbox_aabb": [0.1, 0.1, 0.5, 0.5]}]}]))
    assert check_data_main(["--train-json", str(tmp_path / "train.json"), "--img-root", str(tmp_path), "--tokenizer", str(processor)]) == 0
