"""The tiling maths: DOTA's grid, boxes into a tile and back, the merge across tile borders."""

import numpy as np
import pytest

from trl_ground.data.tiling import boxes_from_tile, boxes_to_tile, check_tiling, merge_boxes, tile_grid


def test_grid_strides_and_ends_flush_with_the_edge():
    grid = tile_grid(2500, 1000, 1024, 200)
    xs = sorted({int(w[0]) for w in grid})
    assert xs == [0, 824, 1476]  # stride 824, the last tile moved back to end at 2500
    assert {int(w[2]) for w in grid} == {1024, 1848, 2500}
    assert (grid[:, 1] == 0).all() and (grid[:, 3] == 1000).all()  # a side shorter than a tile: one tile of its length
    assert tile_grid(500, 400, 1024, 200).tolist() == [[0, 0, 500, 400]]
    assert tile_grid(1024, 1024, 1024, 200).tolist() == [[0, 0, 1024, 1024]]


@pytest.mark.parametrize("size, overlap, visible, words", [
    (512, 512, 0.5, "must be smaller than the tile size"),
    (512, 600, 0.5, "must be smaller than the tile size"),
    (512, -1, 0.5, "overlap must be a whole number"),
    (0, 0, 0.5, "tile size must be"),
    (512, 0, 0.0, "must lie in (0, 1]"),
])
def test_bad_tiling_is_one_line(size, overlap, visible, words):
    with pytest.raises(ValueError, match=None) as err:
        check_tiling(size, overlap, visible)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_boxes_round_trip_through_every_tile_that_holds_them():
    rng = np.random.default_rng(0)
    width, height = 3000, 2000
    xy = rng.uniform(0, 0.95, size=(200, 2))
    wh = rng.uniform(0.002, 0.03, size=(200, 2))
    boxes = np.concatenate([xy, np.minimum(xy + wh, 1.0)], axis=1)
    found = np.zeros(len(boxes), dtype=bool)
    for window in tile_grid(width, height, 640, 128):
        tile, kept = boxes_to_tile(boxes, (width, height), window, min_visible=1.0)
        assert ((tile >= 0) & (tile <= 1)).all()
        back = boxes_from_tile(tile, (width, height), window)
        np.testing.assert_allclose(back, boxes[kept], atol=1e-3)
        found[kept] = True
    assert found.all()  # overlap 128 px > every box: each lies whole in some tile


def test_a_box_on_a_border_is_kept_where_enough_of_it_lies():
    size = (1000, 1000)
    box = np.array([[0.40, 0.10, 0.60, 0.20]])  # 400..600 px: a tile ending at 460 holds 30 % of it
    tile, kept = boxes_to_tile(box, size, [0, 0, 460, 1000], min_visible=0.5)
    assert len(kept) == 0
    tile, kept = boxes_to_tile(box, size, [0, 0, 460, 1000], min_visible=0.3)
    assert kept.tolist() == [0]
    np.testing.assert_allclose(tile[0], [400 / 460, 0.1, 1.0, 0.2])  # clipped at the tile's edge
    np.testing.assert_allclose(boxes_from_tile(tile, size, [0, 0, 460, 1000])[0], [0.40, 0.10, 0.46, 0.20])
    tile, kept = boxes_to_tile(box, size, [440, 0, 1000, 1000], min_visible=0.5)  # 80 % inside
    assert kept.tolist() == [0]


def test_merge_joins_the_halves_of_an_object_cut_by_a_tile_border():
    # one ship at x 0.45..0.55; the left tile (ends at 0.52) and the right tile (starts at 0.47) each see part of it;
    # another ship, inside the overlap band, is seen whole by both tiles and must stay one
    boxes = [[0.45, 0.1, 0.52, 0.2], [0.47, 0.1, 0.55, 0.2], [0.48, 0.5, 0.51, 0.6], [0.481, 0.5, 0.51, 0.6]]
    merged, scores, labels = merge_boxes(boxes, [0.9, 0.8, 0.7, 0.6], ["ship"] * 4, sources=[0, 1, 0, 1])
    assert labels == ["ship", "ship"] and scores.tolist() == [0.9, 0.7]  # scores kept: the group's highest
    np.testing.assert_allclose(merged, [[0.45, 0.1, 0.55, 0.2], [0.48, 0.5, 0.51, 0.6]])
    # NMS keeps the best box of each group as it is
    kept, _, _ = merge_boxes(boxes, [0.9, 0.8, 0.7, 0.6], ["ship"] * 4, sources=[0, 1, 0, 1], method="nms")
    np.testing.assert_allclose(kept, [[0.45, 0.1, 0.52, 0.2], [0.48, 0.5, 0.51, 0.6]])


def test_merge_is_class_wise_and_never_merges_boxes_of_one_tile():
    boxes = [[0.1, 0.1, 0.3, 0.3], [0.1, 0.1, 0.3, 0.3], [0.12, 0.1, 0.3, 0.3]]
    _, _, labels = merge_boxes(boxes, [0.9, 0.8, 0.5], ["ship", "plane", "ship"], sources=[0, 0, 1])
    assert sorted(labels) == ["plane", "ship"]
    same_tile, _, _ = merge_boxes(boxes[:2], [0.9, 0.8], ["ship", "ship"], sources=[0, 0])
    assert len(same_tile) == 2  # the model, seeing one tile, said two objects
    empty = merge_boxes(np.zeros((0, 4)), [], [])
    assert empty[0].shape == (0, 4) and empty[1].shape == (0,) and empty[2] == []
