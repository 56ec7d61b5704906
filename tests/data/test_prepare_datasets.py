"""`data ade20k` (download against a local HTTP server) and `data cityscapes` (layout check)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from fake_datasets import make_ade, make_cityscapes

# The HTTP server fixture of the VOC downloader's tests, serving on 127.0.0.1 only.
from test_download import free_port, md5, server  # noqa: F401

from attnbench.data import ade20k
from attnbench.data.cityscapes import check_cityscapes
from attnbench.data.download import safe_extract
from attnbench.errors import UserError

REPO = Path(__file__).resolve().parents[2]


def zip_of(folder: Path, arc_root: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for path in sorted(folder.rglob("*")):
            zf.write(path, f"{arc_root}/{path.relative_to(folder)}")
    return buf.getvalue()


@pytest.fixture
def ade_zip(tmp_path: Path) -> bytes:
    make_ade(tmp_path / "source")
    return zip_of(tmp_path / "source" / ade20k.FOLDER, ade20k.FOLDER)


def test_ade_downloads_checks_and_unzips_once(tmp_path, server, ade_zip):  # noqa: F811
    server.files[ade20k.ARCHIVE] = ade_zip
    root = tmp_path / "ade"
    counts = ade20k.prepare_ade20k(root, base_urls=server.url, md5=md5(ade_zip), progress=False)
    assert counts == {"train": 3, "val": 2}
    assert len(ade20k.ADE20KSegmentation(root, "val")) == 2
    sent = server.sent
    ade20k.prepare_ade20k(root, base_urls=server.url, md5=md5(ade_zip), progress=False)
    assert server.sent == sent  # already there: nothing fetched again


def test_ade_checksum_mismatch_keeps_nothing(tmp_path, server, ade_zip):  # noqa: F811
    server.files[ade20k.ARCHIVE] = ade_zip
    with pytest.raises(UserError, match=r"checksum mismatch for ADEChallengeData2016\.zip"):
        ade20k.prepare_ade20k(tmp_path, base_urls=server.url, progress=False)  # the real md5
    assert not any(tmp_path.glob("ADEChallengeData2016.zip*"))


def test_ade_without_network_explains_the_manual_layout(tmp_path, ade_zip):
    offline = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(UserError) as err:
        ade20k.prepare_ade20k(tmp_path, base_urls=offline, progress=False)
    text = str(err.value)
    assert "could not download" in text and "by hand" in text and "\n" not in text
    assert f"md5 {ade20k.MD5}" in text and "images/{training,validation}" in text
    # Put by hand, it is checked and unzipped without the network.
    (tmp_path / ade20k.ARCHIVE).write_bytes(ade_zip)
    counts = ade20k.prepare_ade20k(tmp_path, download=False, md5=md5(ade_zip), progress=False)
    assert counts == {"train": 3, "val": 2}


def test_zip_members_outside_the_root_are_refused(tmp_path):
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("../outside.txt", "x")
    with pytest.raises(UserError, match=r"outside"):
        safe_extract(evil, tmp_path / "dest")
    assert not (tmp_path / "outside.txt").exists()


def test_cityscapes_unzips_archives_put_by_hand(tmp_path, capsys):
    make_cityscapes(tmp_path / "source")
    root = tmp_path / "cityscapes"
    root.mkdir()
    for name, folder in (("leftImg8bit_trainvaltest.zip", "leftImg8bit"),
                         ("gtFine_trainvaltest.zip", "gtFine")):  # fmt: skip
        (root / name).write_bytes(zip_of(tmp_path / "source" / folder, folder))
    assert check_cityscapes(root) == {"train": 4, "val": 2}
    assert "Cityscapes ready" in capsys.readouterr().out


def _data_command(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    # This checkout first, then whatever the caller had on the path (where the
    # dependencies may live: the GPU machine carries fvcore there).
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path}
    command = [sys.executable, "-m", "attnbench", "data", *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)


def test_data_cityscapes_command_checks_or_explains(tmp_path):
    missing = _data_command("cityscapes", "--root", str(tmp_path / "cs"), cwd=tmp_path)
    assert missing.returncode == 2 and len(missing.stderr.strip().splitlines()) == 1
    assert "leftImg8bit_trainvaltest.zip" in missing.stderr and "login" in missing.stderr
    make_cityscapes(tmp_path / "cs")
    done = _data_command("cityscapes", "--root", str(tmp_path / "cs"), cwd=tmp_path)
    assert done.returncode == 0 and "train 4 images" in done.stdout
