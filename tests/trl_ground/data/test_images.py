"""Every image is opened before training: broken ones are bad records; every mode becomes
8-bit RGB without losing its contents."""

import io
import json
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from trl_ground.config.data import DataArguments
from trl_ground.data.dataset import ImageLoader, build_dataset
from trl_ground.data.images import check_image, open_rgb, to_rgb
from trl_ground.data.records import load_records


def png_bomb(path, width=20000, height=20000):
    """A valid 1-bit PNG of ``width x height`` black pixels (50 MB decoded, ~50 KB on disk)."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\0" * (1 + (width + 7) // 8)
    z = zlib.compressobj(9)
    idat = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


def photo(size=(96, 64)):
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def bomb(tmp_path_factory):
    return png_bomb(tmp_path_factory.mktemp("bomb") / "bomb.png")


@pytest.fixture()
def broken(tmp_path, bomb):
    """name -> path of a good or broken image file."""
    out = {}
    buf = io.BytesIO()
    photo().save(buf, "JPEG", quality=90)
    (tmp_path / "good.jpg").write_bytes(buf.getvalue())
    (tmp_path / "cut.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])  # a JPEG cut in half
    photo().save(tmp_path / "good.png")
    data = (tmp_path / "good.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    middle = len(data) // 2
    (tmp_path / "zeroed.png").write_bytes(data[:middle] + bytes(20) + data[middle + 20 :])  # corrupt, full length
    (tmp_path / "garbage.jpg").write_bytes(np.random.default_rng(1).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    (tmp_path / "bomb.png").write_bytes(bomb.read_bytes())
    for name in ("good.jpg", "cut.jpg", "good.png", "cut.png", "zeroed.png", "garbage.jpg", "bomb.png"):
        out[name] = tmp_path / name
    return out


def test_check_image_accepts_good_files_and_names_what_is_wrong(broken):
    assert check_image(broken["good.jpg"]) == (96, 64) and check_image(broken["good.png"]) == (96, 64)
    for name, message in [("cut.jpg", "truncated or corrupt"), ("cut.png", "truncated or corrupt"), ("zeroed.png", "corrupt"),
                          ("garbage.jpg", "not an image"), ("bomb.png", "over the pixel limit of 89,478,485")]:
        with pytest.raises(ValueError, match=message):
            check_image(broken[name])


def test_verify_alone_would_not_catch_a_truncated_jpeg(broken):
    """Why the check decodes JPEGs: PIL's verify() passes a JPEG cut in half."""
    with Image.open(broken["cut.jpg"]) as img:
        img.verify()


def test_pixel_limit_follows_pil_setting(broken, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 4000)  # 96 x 64 is over it, below PIL's own error at 2x
    with pytest.raises(ValueError, match="96 x 64 = 6,144 pixels is over the pixel limit of 4,000"):
        check_image(broken["good.png"])
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    assert check_image(broken["good.png"]) == (96, 64)


def records_for(root, names):
    path = root / "train.json"
    path.write_text(json.dumps([{"image": n, "objects": [{"class": "ship", "bbox_aabb": [0.1, 0.1, 0.5, 0.5]}]} for n in names]))
    return path


@pytest.mark.parametrize("name", ["cut.jpg", "cut.png", "zeroed.png", "garbage.jpg", "bomb.png"])
def test_bad_images_are_bad_records_named_and_skippable(broken, tmp_path, name):
    path = records_for(tmp_path, ["good.jpg", name, "good.png"])
    with pytest.raises(ValueError) as err:
        load_records(path, tmp_path)
    assert f"{path}: record 1, field 'image'" in str(err.value) and name in str(err.value)
    records, skipped = load_records(path, tmp_path, on_bad_record="skip")
    assert [r.image for r in records] == ["good.jpg", "good.png"] and len(skipped) == 1 and name in skipped[0]
    # large trusted sets: only existence is checked
    assert len(load_records(path, tmp_path, check_images=False)[0]) == 3


def test_training_data_skips_bad_images(broken, tmp_path):
    path = records_for(tmp_path, ["good.jpg", "cut.jpg"])
    with pytest.raises(ValueError, match="record 1, field 'image'"):
        build_dataset(path, tmp_path, DataArguments())
    ds, _ = build_dataset(path, tmp_path, DataArguments(on_bad_record="skip"))
    assert len(ds) == 1 and ds[0]["image"].mode == "RGB"


def test_a_16_bit_gradient_keeps_its_ordering(tmp_path):
    gradient = np.tile(np.linspace(0, 65535, 256).astype(np.uint16), (32, 1))  # sides multiples of 32: not resized
    Image.fromarray(gradient).save(tmp_path / "g16.png")
    with Image.open(tmp_path / "g16.png") as img:
        assert img.mode.startswith("I;16")
        assert (np.asarray(img.convert("RGB")) == 255).mean() > 0.99  # what PIL alone does: white
    rgb = np.asarray(ImageLoader(32 * 32, 448 * 448).load(str(tmp_path / "g16.png")))
    row = rgb[0, :, 0].astype(int)
    assert (np.diff(row) >= 0).all() and row[0] == 0 and row[-1] == 255
    assert len(np.unique(row)) > 200 and (rgb == 255).mean() < 0.01
    assert (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda: Image.fromarray(np.array([[0, 1000, 65535]], dtype=np.int32), "I"), [0, 4, 255]),  # 16-bit range in mode I
        (lambda: Image.fromarray(np.array([[0, 100, 255]], dtype=np.int32), "I"), [0, 100, 255]),
        (lambda: Image.fromarray(np.array([[-5, 0, 5]], dtype=np.int32), "I"), [0, 128, 255]),  # own range
        (lambda: Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32), "F"), [0, 128, 255]),
        (lambda: Image.fromarray(np.array([[0.0, np.nan, 1000.0]], dtype=np.float32), "F"), [0, 0, 4]),
        (lambda: Image.fromarray(np.array([[0, 255, 0]], dtype=np.uint8)).convert("1"), [0, 255, 0]),
    ],
)
def test_grey_modes_scale_from_their_range(make, expected):
    rgb = np.asarray(to_rgb(make()))
    assert rgb.dtype == np.uint8 and rgb.shape == (1, 3, 3)
    assert rgb[0, :, 0].tolist() == expected


def test_transparency_is_composited_on_white_and_cmyk_converts(tmp_path):
    la = Image.fromarray(np.array([[[0, 0], [0, 255], [200, 255]]], dtype=np.uint8), "LA")
    assert np.asarray(to_rgb(la))[0, :, 0].tolist() == [255, 0, 200]
    p = Image.new("P", (2, 1))
    p.putpalette([0, 0, 0, 10, 20, 30] + [0] * 762)
    p.putpixel((1, 0), 1)
    p.info["transparency"] = 0  # palette entry 0 is transparent
    p.save(tmp_path / "p.png")
    assert np.asarray(open_rgb(tmp_path / "p.png")).tolist() == [[[255, 255, 255], [10, 20, 30]]]
    cmyk = Image.new("CMYK", (1, 1), (0, 255, 255, 0))  # pure red in CMYK
    assert np.asarray(to_rgb(cmyk)).tolist() == [[[255, 0, 0]]]


def test_latin1_json_names_the_file(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    path = tmp_path / "train.json"
    path.write_bytes('[{"image": "a.png", "caption": "caf\u00e9", "objects": []}]'.encode("latin-1"))
    with pytest.raises(ValueError, match=rf"{path}: not UTF-8 text .*re-save the file as UTF-8"):
        load_records(path, tmp_path)
    path.write_bytes('[{"image": "a.png", "caption": "caf\u00e9", "objects": []}]'.encode("utf-8-sig"))  # a BOM is fine
    assert load_records(path, tmp_path)[0][0].caption == "caf\u00e9"


def test_a_file_without_any_object_is_a_clear_error_for_training(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    path = tmp_path / "train.json"
    path.write_text(json.dumps([{"image": "a.png", "objects": []}] * 3))
    with pytest.raises(ValueError, match=rf"{path}: no training example: all 3 records have 'objects': \[\].*prompt_mode 'primary'"):
        build_dataset(path, tmp_path, DataArguments())
