"""`python -m attnbench data voc --root DIR`: fetch Pascal VOC 2012 and SBD, build trainaug.

Downloads resume (HTTP Range into `<archive>.part`), show a progress bar with ETA,
and are checked against the published MD5 before anything is extracted; extraction
refuses members that would land outside DIR. Archives or extracted folders already
in DIR are used as they are, so the data can be placed by hand on a machine without
network access (`--no-download`); the error for an unreachable server says where.
"""

from __future__ import annotations

import hashlib
import http.client
import re
import tarfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UserError
from .voc import PREPARE_COMMAND, build_trainaug, find_voc_dir, read_ids


@dataclass(frozen=True)
class Archive:
    filename: str
    base_url: str
    md5: str
    contents: str  # the folder it extracts to, relative to DIR

    def url(self, base: str | None = None) -> str:
        return f"{(base or self.base_url).rstrip('/')}/{self.filename}"


# By the key that `checksums` (prepare_voc) names them with.
ARCHIVES = {
    "voc": Archive(
        filename="VOCtrainval_11-May-2012.tar",
        base_url="http://host.robots.ox.ac.uk/pascal/VOC/voc2012",
        md5="6cd6e144f989b92b3379bac3b3de84fd",
        contents="VOCdevkit/VOC2012",
    ),
    "sbd": Archive(
        filename="benchmark.tgz",
        base_url="http://www.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/semantic_contours",
        md5="82b4d87ceb2ed10f6038a1cba92111cb",
        contents="benchmark_RELEASE/dataset",
    ),
}
VOC_ARCHIVE, SBD_ARCHIVE = ARCHIVES["voc"], ARCHIVES["sbd"]


class DownloadError(Exception):
    """The server could not be reached or the transfer broke off (network, not user, trouble)."""


def md5sum(path: Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(chunk_size):
            digest.update(block)
    return digest.hexdigest()


def download_file(
    url: str,
    dest: str | Path,
    md5: str,
    *,
    timeout: float = 30.0,
    progress: bool = True,
    chunk_size: int = 1 << 20,
) -> Path:
    """Download url to dest through dest.part, resuming a partial file; verify the MD5.

    Raises DownloadError when the server is unreachable or the transfer breaks off
    (the .part file is kept for the next try) and UserError on a checksum mismatch
    (the .part file is deleted, since resuming it could never succeed).
    """
    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "attnbench"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code != 416 or not offset:
            raise DownloadError(f"{url}: HTTP {err.code} {err.reason}") from err
        response = None  # nothing left to fetch: the part file is already whole
    except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
        reason = getattr(err, "reason", err)
        raise DownloadError(f"{url}: {reason}") from err
    if response is not None:
        _receive(response, url, part, offset, progress=progress, chunk_size=chunk_size)
    actual = md5sum(part)
    if actual != md5:
        part.unlink()
        raise UserError(
            f"checksum mismatch for {dest.name} from {url}: expected md5 {md5}, got {actual}; "
            f"the partial file {part.name} was deleted, rerun to download it again"
        )
    part.replace(dest)
    return dest


def _receive(
    response: Any, url: str, part: Path, offset: int, *, progress: bool, chunk_size: int
) -> None:
    """Append the response's body to `part` (from `offset`), or start it over."""
    from tqdm import tqdm

    with response:
        if offset and response.status != 206:
            offset = 0  # the server ignored the Range header: start over
        total = _total_size(response, offset)
        with (
            open(part, "ab" if offset else "wb") as out,
            tqdm(
                total=total,
                initial=offset,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=part.name.removesuffix(".part"),
                disable=not progress,
            ) as bar,
        ):
            try:
                while block := response.read(chunk_size):
                    out.write(block)
                    bar.update(len(block))
            except (OSError, http.client.HTTPException) as err:
                raise DownloadError(
                    f"{url}: transfer broke off ({err}); {part} is kept and a rerun resumes"
                ) from err
    if total is not None and part.stat().st_size < total:
        raise DownloadError(
            f"{url}: got {part.stat().st_size} of {total} bytes; {part} is kept and a rerun resumes"
        )


def _total_size(response, offset: int) -> int | None:
    content_range = response.headers.get("Content-Range", "")
    match = re.search(r"/(\d+)\s*$", content_range)
    if match:
        return int(match.group(1))
    length = response.headers.get("Content-Length")
    return offset + int(length) if length is not None else None


def safe_extract(archive: Path, dest: Path) -> None:
    """Extract a tar(.gz) or zip into dest, refusing members or links that point outside it."""
    if zipfile.is_zipfile(archive):
        _safe_extract_zip(archive, dest)
        return
    base = dest.resolve()
    try:
        with tarfile.open(archive) as tar:
            members = tar.getmembers()
            for member in members:
                target = (base / member.name).resolve()
                escapes = not target.is_relative_to(base)
                if member.issym():
                    escapes |= not (target.parent / member.linkname).resolve().is_relative_to(base)
                elif member.islnk():
                    escapes |= not (base / member.linkname).resolve().is_relative_to(base)
                if escapes or member.isdev():
                    raise UserError(
                        f"{archive} holds {member.name!r}, which would be written outside "
                        f"{dest} or is a device; refusing to extract it"
                    )
            if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4: a second line of defence
                tar.extractall(base, members=members, filter="data")
            else:
                tar.extractall(base, members=members)
    except (tarfile.TarError, EOFError, OSError) as err:
        raise UserError(f"cannot extract {archive} ({err}); delete it to download again") from err


def _safe_extract_zip(archive: Path, dest: Path) -> None:
    base = dest.resolve()
    try:
        with zipfile.ZipFile(archive) as zf:
            for name in zf.namelist():
                if not (base / name).resolve().is_relative_to(base):
                    raise UserError(
                        f"{archive} holds {name!r}, which would be written outside {dest}; "
                        "refusing to extract it"
                    )
            zf.extractall(base)
    except (zipfile.BadZipFile, EOFError, OSError) as err:
        raise UserError(f"cannot extract {archive} ({err}); delete it to download again") from err


def manual_layout(root: Path, reason: str, sbd: bool = True) -> str:
    """One line: why, and where to put the files by hand (SBD's only when it is wanted)."""
    wanted = [a for a in ARCHIVES.values() if sbd or a is not SBD_ARCHIVE]
    parts = [
        f"{a.filename} (md5 {a.md5}, from {a.url()}) or its extracted {root / a.contents}/"
        for a in wanted
    ]
    command = f"{PREPARE_COMMAND.replace('DIR', str(root))} --no-download"
    note = f" ({SBD_ARCHIVE.filename} is only needed for trainaug)" if sbd else ""
    return (
        f"{reason}. Without network access, put "
        + ("these" if len(parts) > 1 else "this")
        + f" in {root} by hand and rerun `{command}{'' if sbd else ' --no-sbd'}`: "
        + "; ".join(parts)
        + note
    )


def obtain(
    root: Path,
    archive: Archive,
    md5: str,
    *,
    download: bool,
    base_urls: Sequence[str] | None,
    progress: bool,
    manual: Callable[[str], str],
) -> None:
    """Make sure root holds the archive's contents: extract it, downloading it first if needed.

    manual(reason) is the one-line error when the archive cannot be had: what goes where.
    """
    path = root / archive.filename
    if not path.exists():
        if not download:
            raise UserError(manual(f"{path} not found and downloading is off"))
        failures = []
        for base in base_urls or [None]:
            url = archive.url(base)
            print(f"downloading {url}")
            try:
                download_file(url, path, md5, progress=progress)
                break
            except DownloadError as err:
                failures.append(str(err))
        else:
            reason = "could not download: " + "; ".join(failures)
            raise UserError(manual(reason))
    else:
        print(f"verifying {path}")
        actual = md5sum(path)
        if actual != md5:
            raise UserError(
                f"checksum mismatch for {path}: expected md5 {md5}, got {actual}; "
                "delete it (or replace it with the right file) and rerun"
            )
    print(f"extracting {path}")
    safe_extract(path, root)
    _marker(root, archive).touch()


def _marker(root: Path, archive: Archive) -> Path:
    return root / f".{archive.filename}.extracted"


def needs_extraction(root: Path, archive: Archive, present: bool) -> bool:
    # A folder next to its archive but without the marker is an interrupted extraction;
    # a folder without an archive was put there by hand and is trusted.
    if not present:
        return True
    return (root / archive.filename).exists() and not _marker(root, archive).exists()


def _voc_ready(voc_dir: Path | None) -> bool:
    if voc_dir is None:
        return False
    sets = voc_dir / "ImageSets" / "Segmentation"
    return (voc_dir / "SegmentationClass").is_dir() and all(
        (sets / f"{s}.txt").is_file() for s in ("train", "val")
    )


def find_sbd_dir(root: Path) -> Path | None:
    for candidate in (root / SBD_ARCHIVE.contents, root / "dataset"):
        if (candidate / "cls").is_dir() and (candidate / "train.txt").is_file():
            return candidate
    return None


def prepare(root: str, *, download: bool, base_urls: list[str] | None, sbd: bool) -> None:
    """The `data voc` command: download and lay out VOC 2012 (+ SBD's trainaug)."""
    prepare_voc(root, download=download, base_urls=base_urls, sbd=sbd)


def prepare_voc(
    root: str | Path,
    *,
    download: bool = True,
    base_urls: Sequence[str] | str | None = None,
    sbd: bool = True,
    checksums: Mapping[str, str] | None = None,
    progress: bool = True,
) -> None:
    """Lay out VOC 2012 (and with sbd, the trainaug set) under root, downloading if needed.

    base_urls: mirrors holding both archive files, tried in order (default: the
    official sites). checksums: {"voc"|"sbd": md5} overriding the published ones
    (for tests with small stand-in archives).
    """
    root = Path(root).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    if isinstance(base_urls, str):
        base_urls = [base_urls]
    md5s = {key: a.md5 for key, a in ARCHIVES.items()} | dict(checksums or {})
    fetch = {
        "download": download,
        "base_urls": base_urls,
        "progress": progress,
        "manual": lambda reason: manual_layout(root, reason, sbd),
    }

    voc_dir = find_voc_dir(root)
    if needs_extraction(root, VOC_ARCHIVE, _voc_ready(voc_dir)):
        obtain(root, VOC_ARCHIVE, md5s["voc"], **fetch)
        voc_dir = find_voc_dir(root)
        if not _voc_ready(voc_dir):
            raise UserError(f"{VOC_ARCHIVE.filename} did not yield {root / VOC_ARCHIVE.contents}")
    assert voc_dir is not None
    sets = voc_dir / "ImageSets" / "Segmentation"

    if sbd and not (sets / "trainaug.txt").is_file():
        sbd_dir = find_sbd_dir(root)
        if needs_extraction(root, SBD_ARCHIVE, sbd_dir is not None):
            obtain(root, SBD_ARCHIVE, md5s["sbd"], **fetch)
            sbd_dir = find_sbd_dir(root)
            if sbd_dir is None:
                expected = root / SBD_ARCHIVE.contents
                raise UserError(f"{SBD_ARCHIVE.filename} did not yield {expected}")
        build_trainaug(voc_dir, sbd_dir, progress=progress)

    counts = {
        split: len(read_ids(sets / f"{split}.txt"))
        for split in ("train", "val", "trainaug")
        if (sets / f"{split}.txt").is_file()
    }
    summary = ", ".join(f"{split} {n}" for split, n in counts.items())
    print(f"Pascal VOC 2012 ready in {voc_dir}: {summary} images")
    archives = [root / a.filename for a in ARCHIVES.values() if (root / a.filename).exists()]
    if archives:
        print("the archives can be deleted now: " + " ".join(str(p) for p in archives))
