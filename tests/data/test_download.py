"""The VOC/SBD downloader, against a local HTTP server on 127.0.0.1 only."""

from __future__ import annotations

import argparse
import hashlib
import http.server
import io
import socket
import tarfile
import threading
from pathlib import Path

import pytest

# fake_voc sits in tests/ (pytest puts tests/ on sys.path): the tree builders.
from fake_voc import SBD_TRAIN, SBD_VAL, VOC_TRAIN, VOC_VAL, make_sbd, make_voc

from attnbench.data import command as data_command
from attnbench.data import download as dl
from attnbench.data.voc import VOCSegmentation
from attnbench.errors import UserError


class Handler(http.server.BaseHTTPRequestHandler):
    """Serves server.files (name -> bytes), honouring Range when server.honour_range."""

    def do_GET(self):
        srv = self.server
        data = srv.files.get(self.path.lstrip("/"))
        srv.log.append((self.path, self.headers.get("Range")))
        if data is None:
            self.send_error(404)
            return
        start = 0
        rng = self.headers.get("Range")
        if rng and srv.honour_range:
            start = int(rng.removeprefix("bytes=").split("-")[0])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        # Counted before writing: once the client holds the bytes, the count must be final.
        srv.sent += len(body)
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.files, srv.log, srv.sent, srv.honour_range = {}, [], 0, True
    thread = threading.Thread(target=srv.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}"
    yield srv
    srv.shutdown()
    srv.server_close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def tar_of(folder: Path, arcname: str, gz: bool = False) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz" if gz else "w") as tar:
        tar.add(folder, arcname=arcname)
    return buf.getvalue()


PAYLOAD = bytes(range(256)) * 400  # ~100 kB, several read chunks


def test_download_verifies_md5(tmp_path, server):
    server.files["a.tar"] = PAYLOAD
    out = dl.download_file(f"{server.url}/a.tar", tmp_path / "a.tar", md5(PAYLOAD), progress=False)
    assert out.read_bytes() == PAYLOAD and not (tmp_path / "a.tar.part").exists()


def test_download_resumes_a_partial_file(tmp_path, server):
    server.files["a.tar"] = PAYLOAD
    (tmp_path / "a.tar.part").write_bytes(PAYLOAD[:30000])
    dl.download_file(
        f"{server.url}/a.tar", tmp_path / "a.tar", md5(PAYLOAD), progress=False, chunk_size=4096
    )
    assert (tmp_path / "a.tar").read_bytes() == PAYLOAD
    assert server.log == [("/a.tar", "bytes=30000-")] and server.sent == len(PAYLOAD) - 30000


def test_download_restarts_when_range_is_ignored(tmp_path, server):
    server.files["a.tar"], server.honour_range = PAYLOAD, False
    (tmp_path / "a.tar.part").write_bytes(b"stale bytes that must not survive")
    dl.download_file(f"{server.url}/a.tar", tmp_path / "a.tar", md5(PAYLOAD), progress=False)
    assert (tmp_path / "a.tar").read_bytes() == PAYLOAD


def test_download_of_an_already_complete_part(tmp_path, server):
    server.files["a.tar"] = PAYLOAD
    (tmp_path / "a.tar.part").write_bytes(PAYLOAD)
    dl.download_file(f"{server.url}/a.tar", tmp_path / "a.tar", md5(PAYLOAD), progress=False)
    assert (tmp_path / "a.tar").read_bytes() == PAYLOAD and server.sent == 0


def test_checksum_mismatch_names_file_and_both_md5s(tmp_path, server):
    server.files["a.tar"] = PAYLOAD
    wrong = "0" * 32
    with pytest.raises(UserError) as err:
        dl.download_file(f"{server.url}/a.tar", tmp_path / "a.tar", wrong, progress=False)
    message = str(err.value)
    assert "a.tar" in message and wrong in message and md5(PAYLOAD) in message
    assert not (tmp_path / "a.tar.part").exists() and not (tmp_path / "a.tar").exists()


def test_missing_file_on_server_is_a_download_error(tmp_path, server):
    with pytest.raises(dl.DownloadError, match="404"):
        dl.download_file(f"{server.url}/nope.tar", tmp_path / "n.tar", "0" * 32, progress=False)


def test_unreachable_server_explains_the_manual_layout(tmp_path):
    mirror = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(UserError) as err:
        dl.prepare_voc(tmp_path, base_urls=[mirror], progress=False)
    message = str(err.value)
    assert "could not download" in message and "\n" not in message
    for needed in ("VOCtrainval_11-May-2012.tar", "VOCdevkit/VOC2012", "benchmark.tgz"):
        assert needed in message
    assert "--no-download" in message
    with pytest.raises(UserError, match="downloading is off"):
        dl.prepare_voc(tmp_path, download=False, progress=False)


@pytest.mark.parametrize("download", [True, False])
def test_without_sbd_the_manual_layout_leaves_sbd_out(tmp_path, download):
    mirror = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(UserError) as err:
        dl.prepare_voc(tmp_path, download=download, base_urls=[mirror], sbd=False, progress=False)
    message = str(err.value)
    assert "VOCtrainval_11-May-2012.tar" in message and "--no-download --no-sbd" in message
    assert "benchmark" not in message and "SBD" not in message and "trainaug" not in message


@pytest.fixture
def archives(tmp_path):
    """Small stand-ins for the two archives, with their MD5s."""
    src = tmp_path / "src"
    make_voc(src, VOC_TRAIN, VOC_VAL)
    make_sbd(src, SBD_TRAIN, SBD_VAL)
    voc = tar_of(src / "VOCdevkit", "VOCdevkit")
    sbd = tar_of(src / "benchmark_RELEASE", "benchmark_RELEASE", gz=True)
    return {"VOCtrainval_11-May-2012.tar": voc, "benchmark.tgz": sbd}, {
        "voc": md5(voc),
        "sbd": md5(sbd),
    }


def test_prepare_voc_downloads_extracts_and_builds_trainaug(tmp_path, server, archives, capsys):
    files, checksums = archives
    server.files.update(files)
    root = tmp_path / "data"
    dl.prepare_voc(root, base_urls=[server.url], checksums=checksums, progress=False)
    assert len(server.log) == 2
    assert len(VOCSegmentation(root, "trainaug")) == 4 and len(VOCSegmentation(root, "val")) == 2
    assert "trainaug 4" in capsys.readouterr().out
    # Done once: a second run neither downloads nor rebuilds.
    dl.prepare_voc(root, base_urls=[server.url], checksums=checksums, progress=False)
    assert len(server.log) == 2


def test_prepare_voc_uses_archives_placed_by_hand(tmp_path, archives):
    files, checksums = archives
    root = tmp_path / "data"
    root.mkdir()
    for name, data in files.items():
        (root / name).write_bytes(data)
    parser = argparse.ArgumentParser()
    data_command.configure_parser(parser)
    args = parser.parse_args(["voc", "--root", str(root), "--no-download"])
    with pytest.raises(UserError, match=r"checksum mismatch .*VOCtrainval_11-May-2012\.tar"):
        data_command.command(args)  # the published MD5s do not match the stand-ins
    dl.prepare_voc(root, download=False, checksums=checksums, progress=False)
    assert (root / "VOCdevkit/VOC2012/ImageSets/Segmentation/trainaug.txt").is_file()


def test_prepare_voc_without_sbd_needs_only_voc(tmp_path):
    make_voc(tmp_path, VOC_TRAIN, VOC_VAL)  # extracted by hand, no archives at all
    dl.prepare_voc(tmp_path, download=False, sbd=False, progress=False)
    assert not (tmp_path / "VOCdevkit/VOC2012/ImageSets/Segmentation/trainaug.txt").exists()


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink"])
def test_extraction_refuses_paths_outside_root(tmp_path, kind):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo({"dotdot": "../evil", "absolute": "/tmp/evil"}.get(kind, "link"))
        if kind == "symlink":
            info.type, info.linkname = tarfile.SYMTYPE, "../../outside"
            tar.addfile(info)
        else:
            info.size = 4
            tar.addfile(info, io.BytesIO(b"evil"))
    archive = tmp_path / "bad.tar"
    archive.write_bytes(buf.getvalue())
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(UserError, match="outside"):
        dl.safe_extract(archive, dest)
    assert list(dest.iterdir()) == [] and not (tmp_path / "evil").exists()
