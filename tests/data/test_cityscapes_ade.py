"""Cityscapes and ADE20K readers on tiny trees in the official layouts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fake_datasets import ade_label, cityscapes_label_ids, make_ade, make_cityscapes

from attnbench.data import ade20k, cityscapes
from attnbench.errors import UserError

# labelId -> trainId of the benchmark, written out from cityscapesscripts' labels.py table.
CITYSCAPES_TRAIN_IDS = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9,
    23: 10, 24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}  # fmt: skip


def test_cityscapes_label_ids_map_to_the_19_train_ids_and_the_rest_to_255():
    ids = np.arange(256, dtype=np.uint8)
    mapped = cityscapes.to_train_ids(ids)
    for label_id in range(256):
        assert mapped[label_id] == CITYSCAPES_TRAIN_IDS.get(label_id, 255), label_id
    assert cityscapes.NUM_CLASSES == 19 and cityscapes.CLASS_NAMES[13] == "car"


def test_cityscapes_dataset_reads_pairs_and_maps_labels(tmp_path):
    make_cityscapes(tmp_path)
    train = cityscapes.CityscapesSegmentation(tmp_path, "train")
    val = cityscapes.CityscapesSegmentation(tmp_path, "val")
    assert len(train) == 4 and len(val) == 2
    image, label = val[0]
    assert image.shape == (3, 24, 40) and image.dtype == torch.float32
    expected = cityscapes.to_train_ids(cityscapes_label_ids(4))  # val's first frame: seed 4
    assert torch.equal(label, torch.from_numpy(expected.astype(np.int64)))
    assert set(label.unique().tolist()) == {0, 10, 13, 255}  # road, sky, car, ignored


def test_cityscapes_errors_name_the_file_and_the_archives(tmp_path):
    with pytest.raises(UserError, match=r"leftImg8bit/train is missing.*gtFine_trainvaltest\.zip"):
        cityscapes.CityscapesSegmentation(tmp_path, "train")
    make_cityscapes(tmp_path)
    labels = sorted((tmp_path / "gtFine" / "val" / "frankfurt").glob("*_labelIds.png"))
    labels[0].unlink()
    with pytest.raises(UserError, match=rf"missing label .*{labels[0].name}") as err:
        cityscapes.CityscapesSegmentation(tmp_path, "val")
    assert "\n" not in str(err.value)
    images = sorted((tmp_path / "leftImg8bit" / "train").glob("*/*.png"))
    images[1].write_bytes(images[1].read_bytes()[:60])  # a truncated PNG
    train = cityscapes.CityscapesSegmentation(tmp_path, "train")
    with pytest.raises(UserError, match=rf"unreadable image .*{images[1].name}"):
        train[1]


def test_cityscapes_layout_check_counts_splits(tmp_path, capsys):
    make_cityscapes(tmp_path)
    assert cityscapes.check_cityscapes(tmp_path) == {"train": 4, "val": 2}
    assert "the release has 2975" in capsys.readouterr().out


def test_ade_reduce_zero_label_ignores_other_and_shifts_classes():
    label = np.array([[0, 1, 2], [149, 150, 255]], np.uint8)
    assert ade20k.reduce_zero_label(label).tolist() == [[255, 0, 1], [148, 149, 255]]
    assert ade20k.NUM_CLASSES == 150 and ade20k.CLASS_NAMES[0] == "wall"
    assert ade20k.CLASS_NAMES[-1] == "flag" and ade20k.CLASS_NAMES[44] == "chest of drawers"


def test_ade_dataset_reads_both_root_forms(tmp_path):
    make_ade(tmp_path)
    for root in (tmp_path, tmp_path / "ADEChallengeData2016"):
        train = ade20k.ADE20KSegmentation(root, "train")
        val = ade20k.ADE20KSegmentation(root, "val")
        assert len(train) == 3 and len(val) == 2
        _, label = val[1]  # seed 4
        expected = ade20k.reduce_zero_label(ade_label(4)).astype(np.int64)
        assert torch.equal(label, torch.from_numpy(expected))
        assert (label == 255).sum() == 4 * 40  # the band of 0 = other
        assert label[label != 255].max() == 149 and label[label != 255].min() == 0


def test_ade_errors_name_the_file_and_the_archive(tmp_path):
    with pytest.raises(UserError, match=r"no ADE20K found.*ADEChallengeData2016\.zip.*md5"):
        ade20k.ADE20KSegmentation(tmp_path, "train")
    make_ade(tmp_path)
    annotations = tmp_path / "ADEChallengeData2016" / "annotations" / "validation"
    (annotations / "ADE_val_00000002.png").unlink()
    with pytest.raises(UserError, match=r"missing annotation .*ADE_val_00000002\.png"):
        ade20k.ADE20KSegmentation(tmp_path, "val")
    (annotations / "ADE_val_00000001.png").write_bytes(b"\x89PNG broken")
    (annotations / "ADE_val_00000002.png").write_bytes(b"")
    val = ade20k.ADE20KSegmentation(tmp_path, "val")
    with pytest.raises(UserError, match=r"unreadable label .*ADE_val_00000001\.png") as err:
        val[0]
    assert "\n" not in str(err.value)
