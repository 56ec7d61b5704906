"""Data sets: the synthetic task, transforms, VOC reading, SBD .mat reading, trainaug."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fake_voc import (
    SBD_TRAIN,
    SBD_VAL,
    VOC_TRAIN,
    VOC_VAL,
    H,
    W,
    fake_label,
    make_sbd,
    make_voc,
    sbd_gt,
    write_mat,
)
from PIL import Image

from attnbench.data import build_dataset, dataset_info
from attnbench.data.synthetic import CLASS_NAMES, KIND_COLOURS, SyntheticShapes
from attnbench.data.transforms import IMAGENET_MEAN, IMAGENET_STD, SegTransform
from attnbench.data.voc import (
    VOCSegmentation,
    build_trainaug,
    read_label,
    read_sbd_label,
    voc_palette,
)
from attnbench.errors import UserError
from attnbench.experiment.config import DataConfig


def data_cfg(**kw):
    base = dict(crop_size=16, image_size=48, train_size=8, val_size=4)
    return DataConfig(**(base | kw))


# -- synthetic -------------------------------------------------------------------------


def test_synthetic_is_deterministic_and_split_dependent():
    a, b = SyntheticShapes("train", size=4), SyntheticShapes("train", size=4)
    for i in range(4):
        (ia, la, _), (ib, lb, _) = a.sample(i), b.sample(i)
        assert np.array_equal(ia, ib) and np.array_equal(la, lb)
    val = SyntheticShapes("val", size=4)
    other_seed = SyntheticShapes("train", size=4, data_seed=1)
    assert not np.array_equal(a.sample(0)[0], val.sample(0)[0])
    assert not np.array_equal(a.sample(0)[0], other_seed.sample(0)[0])


def test_synthetic_cache_returns_the_rendered_pixels_and_stays_bounded(monkeypatch):
    from attnbench.data import rendered

    cache = rendered.RenderCache(max_bytes=3 * (3 * 32 * 32 * 4 + 32 * 32))
    monkeypatch.setattr(rendered, "_RENDERED", cache)
    ds = SyntheticShapes("train", size=6, image_size=32)
    for i in range(6):
        image, label = ds[i]
        fresh_image, fresh_label, _ = ds.sample(i)
        assert torch.equal(image, torch.from_numpy(fresh_image))
        assert torch.equal(label, torch.from_numpy(fresh_label).long())
        image.mul_(0)  # a caller writing into its item must not reach the cache
    assert len(cache) == 3 and cache.bytes <= cache.max_bytes  # the rest is not kept
    again = SyntheticShapes("train", size=6, image_size=32)
    for i in range(6):
        assert torch.equal(again[i][0], torch.from_numpy(ds.sample(i)[0]))
    # Any parameter that changes the pixels is part of the key.
    other = SyntheticShapes("train", size=6, image_size=32, kind_cue="colour")
    assert not torch.equal(other[0][0], again[0][0])
    assert len(cache) == 3
    cache.clear()
    assert ds.render_all(show=False) == 3 and len(cache) == 3  # as many as fit
    cache.max_bytes *= 3
    assert ds.render_all(show=False) == 6


def test_synthetic_labels_follow_the_pairing_rule():
    ds = SyntheticShapes("train", size=60, image_size=64)
    for i in range(len(ds)):
        image, label, shapes = ds.sample(i)
        assert image.shape == (3, 64, 64) and image.dtype == np.float32
        assert image.min() >= 0.0 and image.max() <= 1.0
        assert 2 <= len(shapes) <= 4
        kinds = [s.kind for s in shapes]
        for s in shapes:
            assert s.label == 1 + 2 * s.kind + (kinds.count(s.kind) == 1)  # paired, or alone: +1
            assert s.label in np.unique(label)  # every shape is visible
        for p in shapes:
            for q in shapes:
                if p is not q and p.kind == q.kind:
                    # same-kind shapes are far apart: the cue is never local
                    assert np.hypot(p.cy - q.cy, p.cx - q.cx) >= 0.8 * 0.45 * 64
        assert set(np.unique(label)) <= set(range(len(CLASS_NAMES)))


def test_synthetic_classes_are_balanced_between_paired_and_alone():
    ds = SyntheticShapes("train", size=200, image_size=48)
    counts = np.zeros(7)
    for i in range(len(ds)):
        counts += np.bincount(ds.sample(i)[1].ravel(), minlength=7)
    paired, alone = counts[[1, 3, 5]].sum(), counts[[2, 4, 6]].sum()
    assert 0.4 < alone / (paired + alone) < 0.6
    assert (counts[1:] > 0).all()


def test_synthetic_items_and_flip_follow_torch_seed():
    ds = build_dataset(data_cfg(), "train", train=True)
    assert len(ds) == 8
    torch.manual_seed(3)
    first = [ds[i] for i in range(8)]
    torch.manual_seed(3)
    second = [ds[i] for i in range(8)]
    for (x1, y1), (x2, y2) in zip(first, second, strict=True):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
        assert x1.shape == (3, 48, 48) and x1.dtype == torch.float32
        assert y1.shape == (48, 48) and y1.dtype == torch.int64
    plain = build_dataset(data_cfg(), "train", train=False)
    flipped = [torch.equal(x, plain[i][0].flip(-1)) for i, (x, _) in enumerate(first)]
    unflipped = [torch.equal(x, plain[i][0]) for i, (x, _) in enumerate(first)]
    assert all(f or u for f, u in zip(flipped, unflipped, strict=True))
    assert any(flipped) and any(unflipped)


def test_synthetic_dataloader_workers_are_reproducible():
    ds = build_dataset(data_cfg(), "train", train=True)

    def epoch():
        loader = torch.utils.data.DataLoader(
            ds,
            batch_size=4,
            shuffle=True,
            num_workers=2,
            generator=torch.Generator().manual_seed(7),
        )
        return [batch for batch in loader]

    for (x1, y1), (x2, y2) in zip(epoch(), epoch(), strict=True):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)


def test_dataset_info_and_bad_config():
    info = dataset_info(data_cfg())
    assert info.num_classes == 7 and info.class_names[0] == "background"
    voc = dataset_info(data_cfg(dataset="voc"))
    assert voc.num_classes == 21 and voc.class_names[15] == "person"
    assert dataset_info(data_cfg(dataset="cityscapes")).num_classes == 19
    assert dataset_info(data_cfg(dataset="ade20k")).num_classes == 150
    retrieval = dataset_info(data_cfg(dataset="probe", probe="retrieval"))
    assert retrieval.num_classes == 7 and retrieval.class_names[2] == "disk_white"
    with pytest.raises(UserError, match=r"data\.root"):
        build_dataset(data_cfg(dataset="voc"), "train", train=True)
    with pytest.raises(UserError, match="split"):
        build_dataset(data_cfg(), "test", train=False)
    val = build_dataset(data_cfg(), "val", train=False)
    assert len(val) == 4


# -- transforms ------------------------------------------------------------------------


def test_train_transform_scales_pads_and_crops():
    torch.manual_seed(0)
    image = torch.rand(3, 10, 12)
    label = torch.randint(0, 5, (10, 12))
    t = SegTransform(crop_size=32, scale_range=(0.5, 1.5), flip=True)
    for _ in range(5):
        x, y = t(image, label)
        assert x.shape == (3, 32, 32) and y.shape == (32, 32) and y.dtype == torch.int64
        pad = y == 255  # the image is smaller than the crop: padding is ignored
        assert pad.any() and (x[:, pad] == 0).all()  # 0 after normalising = the mean
        assert set(y[~pad].unique().tolist()) <= set(range(5))


def test_eval_transform_normalises_only():
    image, label = torch.rand(3, 7, 9), torch.randint(0, 3, (7, 9))
    x, y = SegTransform()(image, label)
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    assert torch.allclose(x * std + mean, image, atol=1e-6) and torch.equal(y, label)


# -- SBD's MAT-files (scipy.io) --------------------------------------------------------


@pytest.mark.parametrize("compress", [True, False])
def test_sbd_label_reads_scipys_writer(tmp_path, compress):
    seg = np.arange(20 * 24, dtype=np.int64).reshape(20, 24) % 21
    path = tmp_path / "x.mat"
    write_mat(path, {"GTcls": sbd_gt(seg), "note": "hi"}, compress=compress)
    label = read_sbd_label(path)
    assert label.dtype == np.uint8 and np.array_equal(label, seg)


def test_sbd_label_rejects_other_files_in_one_line(tmp_path):
    bad = tmp_path / "bad.mat"
    for content in (b"\x89HDF\r\n\x1a\n" + b"\0" * 200, b"x" * 200):
        bad.write_bytes(content)
        with pytest.raises(UserError, match=r"unreadable SBD label .*bad\.mat"):
            read_sbd_label(bad)
    write_mat(bad, {"other": np.eye(2)})
    with pytest.raises(UserError, match=r"no GTcls\.Segmentation"):
        read_sbd_label(bad)


# -- VOC -------------------------------------------------------------------------------


def test_voc_dataset_reads_images_and_palette_labels(tmp_path):
    make_voc(tmp_path, VOC_TRAIN, VOC_VAL)
    for root in (tmp_path, tmp_path / "VOCdevkit" / "VOC2012"):  # either root form works
        ds = VOCSegmentation(root, "val")
        assert len(ds) == 2
        image, label = ds[0]
        assert image.shape == (3, H, W) and image.dtype == torch.float32
        assert torch.equal(label, torch.from_numpy(fake_label(2).astype(np.int64)))
    cfg = data_cfg(dataset="voc", root=str(tmp_path), crop_size=16)
    torch.manual_seed(0)
    x, y = build_dataset(cfg, "train", train=True)[1]
    assert x.shape == (3, 16, 16) and y.shape == (16, 16)
    x, y = build_dataset(cfg, "val", train=False)[1]
    assert x.shape == (3, H, W) and (y == 255).sum() == 15


def test_voc_label_reader_accepts_rgb_renderings(tmp_path):
    label = fake_label(3)
    rgb = voc_palette()[label]
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    assert np.array_equal(read_label(tmp_path / "rgb.png"), label)


def test_voc_errors_name_the_file_and_layout(tmp_path):
    with pytest.raises(UserError, match=r"no Pascal VOC.*python -m attnbench data voc --root"):
        VOCSegmentation(tmp_path, "train")
    voc = make_voc(tmp_path, VOC_TRAIN, VOC_VAL)
    with pytest.raises(UserError, match=r"trainaug\.txt"):
        VOCSegmentation(tmp_path, "trainaug")
    (voc / "ImageSets" / "Segmentation" / "val.txt").unlink()
    with pytest.raises(UserError, match=r"val\.txt.*JPEGImages"):
        VOCSegmentation(tmp_path, "val")
    (voc / "JPEGImages" / f"{VOC_TRAIN[0]}.jpg").unlink()
    (voc / "JPEGImages" / f"{VOC_TRAIN[1]}.jpg").write_bytes(b"not a jpeg")
    ds = VOCSegmentation(tmp_path, "train")
    with pytest.raises(UserError, match=rf"missing image .*{VOC_TRAIN[0]}\.jpg"):
        ds[0]
    with pytest.raises(UserError, match=rf"unreadable image .*{VOC_TRAIN[1]}\.jpg"):
        ds[1]


def test_trainaug_is_sbd_plus_voc_train_minus_voc_val(tmp_path):
    voc = make_voc(tmp_path, VOC_TRAIN, VOC_VAL)
    sbd = make_sbd(tmp_path, SBD_TRAIN, SBD_VAL)
    # The SBD-only images are missing from JPEGImages: they are taken from SBD's img/.
    assert build_trainaug(voc, sbd, progress=False) == 4
    listed = (voc / "ImageSets" / "Segmentation" / "trainaug.txt").read_text().split()
    assert listed == sorted({*SBD_TRAIN, *SBD_VAL, *VOC_TRAIN} - set(VOC_VAL))
    assert "2007_000033" not in listed  # in SBD train, but VOC val
    ds = VOCSegmentation(tmp_path, "trainaug")
    labels = {image.stem: ds[i][1].numpy() for i, (image, _) in enumerate(ds.pairs)}
    # VOC's own annotation wins where it exists (it has the 255 borders) ...
    assert np.array_equal(labels["2007_000039"], fake_label(1))
    # ... and SBD's .mat labels, as palette PNGs, fill in the rest.
    sbd_index = (SBD_TRAIN + SBD_VAL).index("2008_000003")
    expected = np.zeros((H, W), np.uint8)
    expected[2:12, 3:9] = 1 + (7 * sbd_index) % 20
    assert np.array_equal(labels["2008_000003"], expected)
    with Image.open(voc / "SegmentationClassAug" / "2008_000003.png") as png:
        assert png.mode == "P"
    assert (voc / "JPEGImages" / "2008_000002.jpg").exists()
    # A second run keeps what is there.
    assert build_trainaug(voc, sbd, progress=False) == 4


def test_colour_cue_gives_each_kind_its_hue():
    ds = SyntheticShapes("train", size=6, image_size=48, kind_cue="colour", noise=0.0)
    for i in range(6):
        _, _, shapes = ds.sample(i)
        for shape in shapes:
            # The jittered hue stays closest to its own kind's colour.
            dist = np.linalg.norm(KIND_COLOURS - np.asarray(shape.colour), axis=1)
            assert int(np.argmin(dist)) == shape.kind
    with pytest.raises(ValueError, match="kind_cue"):
        SyntheticShapes("train", size=1, kind_cue="texture")
