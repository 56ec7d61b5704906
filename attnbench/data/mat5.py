"""A minimal reader for MATLAB level-5 MAT-files, enough for SBD's `cls/*.mat`.

SBD stores each label as a struct `GTcls` with fields Boundaries (a cell of sparse
matrices), Segmentation (uint8 class ids) and CategoriesPresent. This reader handles
what such files use: the 128-byte header, either byte order, miMATRIX elements
(plain or inside zlib-compressed miCOMPRESSED elements), the small-element format,
numeric and char arrays, cells and structs. Sparse matrices and objects are skipped
(returned as None): nothing here needs them. MAT v7.3 files are HDF5 and not read.

Layout reminders (MATLAB "MAT-File Format", level 5): every data element starts with
an 8-byte tag (uint32 type, uint32 byte count) and is padded to 8 bytes; a tag whose
upper 16 bits are non-zero is a small element (count in the upper half, type in the
lower) with up to 4 data bytes inside the tag itself. Arrays are column-major.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np

MI_INT8, MI_UINT8, MI_INT16, MI_UINT16, MI_INT32, MI_UINT32 = 1, 2, 3, 4, 5, 6
MI_SINGLE, MI_DOUBLE, MI_INT64, MI_UINT64 = 7, 9, 12, 13
MI_MATRIX, MI_COMPRESSED, MI_UTF8, MI_UTF16, MI_UTF32 = 14, 15, 16, 17, 18

_MI_DTYPES = {
    MI_INT8: "i1",
    MI_UINT8: "u1",
    MI_INT16: "i2",
    MI_UINT16: "u2",
    MI_INT32: "i4",
    MI_UINT32: "u4",
    MI_SINGLE: "f4",
    MI_DOUBLE: "f8",
    MI_INT64: "i8",
    MI_UINT64: "u8",
    MI_UTF8: "u1",
    MI_UTF16: "u2",
    MI_UTF32: "u4",
}

MX_CELL, MX_STRUCT, MX_OBJECT, MX_CHAR, MX_SPARSE = 1, 2, 3, 4, 5
# Numeric array classes -> the dtype MATLAB shows, whatever smaller type is stored.
_MX_DTYPES = {
    6: "f8",
    7: "f4",
    8: "i1",
    9: "u1",
    10: "i2",
    11: "u2",
    12: "i4",
    13: "u4",
    14: "i8",
    15: "u8",
}
_COMPLEX_FLAG = 0x0800
_LOGICAL_FLAG = 0x0200


class MatFileError(ValueError):
    """The bytes are not a level-5 MAT-file this reader understands."""


def loadmat(path: str | Path) -> dict[str, Any]:
    """Top-level variables of a level-5 MAT-file: name -> value.

    Values: numpy arrays for numeric/char/logical (char arrays become str when 1 x n),
    dict of field -> value for a 1x1 struct (an array of dicts, object dtype, otherwise),
    object arrays for cells, None for sparse and object arrays.
    """
    data = Path(path).read_bytes()
    if len(data) < 128:
        raise MatFileError(f"{path}: too short for a MAT-file header")
    if data[:8] == b"\x89HDF\r\n\x1a\n" or data[512:520] == b"\x89HDF\r\n\x1a\n":
        raise MatFileError(f"{path}: MAT v7.3 (HDF5) is not supported")
    endian = {b"IM": "<", b"MI": ">"}.get(data[126:128])
    if endian is None:
        raise MatFileError(f"{path}: no level-5 endian indicator at byte 126")
    variables: dict[str, Any] = {}
    try:
        for mi_type, body in _elements(data, 128, len(data), endian):
            if mi_type == MI_COMPRESSED:
                inner = zlib.decompress(body)
                for sub_type, sub_body in _elements(inner, 0, len(inner), endian):
                    _add_variable(variables, sub_type, sub_body, endian)
            else:
                _add_variable(variables, mi_type, body, endian)
    except (struct.error, zlib.error, IndexError, ValueError, StopIteration) as err:
        raise MatFileError(f"{path}: corrupt or unsupported MAT-file ({err})") from err
    return variables


def _add_variable(out: dict[str, Any], mi_type: int, body: bytes, endian: str) -> None:
    if mi_type != MI_MATRIX:
        return  # stray top-level data; MATLAB writes none
    name, value = _matrix(body, endian)
    out[name] = value


def _elements(buf: bytes, start: int, end: int, endian: str):
    """Yield (type, body bytes) for each data element in buf[start:end]."""
    pos = start
    while pos + 8 <= end:
        mi_type, nbytes, header = _tag(buf, pos, endian)
        if header == 4:  # small element: data inside the tag
            yield mi_type, buf[pos + 4 : pos + 4 + nbytes]
            pos += 8
            continue
        body = buf[pos + 8 : pos + 8 + nbytes]
        if len(body) < nbytes:
            raise ValueError(f"element at byte {pos} runs past the end")
        yield mi_type, body
        # Compressed elements are not padded; everything else is padded to 8 bytes.
        pos += 8 + (nbytes if mi_type == MI_COMPRESSED else -(-nbytes // 8) * 8)


def _tag(buf: bytes, pos: int, endian: str) -> tuple[int, int, int]:
    """(type, byte count, header length) of the tag at pos."""
    first, second = struct.unpack_from(endian + "II", buf, pos)
    if first >> 16:
        return first & 0xFFFF, first >> 16, 4
    return first, second, 8


def _numeric(mi_type: int, body: bytes, endian: str) -> np.ndarray:
    if mi_type not in _MI_DTYPES:
        raise ValueError(f"unsupported data type {mi_type}")
    return np.frombuffer(body, dtype=endian + _MI_DTYPES[mi_type])


def _matrix(body: bytes, endian: str) -> tuple[str, Any]:
    """Parse one miMATRIX body into (array name, value)."""
    parts = _elements(body, 0, len(body), endian)
    flags_type, flags_body = next(parts)
    flags = _numeric(flags_type, flags_body, endian)
    mx_class, flag_bits = int(flags[0]) & 0xFF, int(flags[0]) & 0xFF00
    dims = tuple(int(d) for d in _numeric(*next(parts), endian))
    name = next(parts)[1].decode("latin-1")
    if mx_class in (MX_SPARSE, MX_OBJECT):
        return name, None
    if mx_class == MX_CELL:
        cells = np.empty(int(np.prod(dims)), dtype=object)
        for i in range(cells.size):
            cells[i] = _matrix(next(parts)[1], endian)[1]
        return name, cells.reshape(dims, order="F")
    if mx_class == MX_STRUCT:
        return name, _struct(parts, dims, endian)
    real = _numeric(*next(parts), endian)
    if mx_class == MX_CHAR:
        chars = real.reshape(dims, order="F")
        if len(dims) == 2 and dims[0] == 1:
            return name, "".join(map(chr, chars[0]))
        return name, chars
    if mx_class not in _MX_DTYPES:
        raise ValueError(f"unsupported array class {mx_class} in {name!r}")
    values = real.astype(_MX_DTYPES[mx_class])
    if flag_bits & _COMPLEX_FLAG:
        values = values + 1j * _numeric(*next(parts), endian)
    if flag_bits & _LOGICAL_FLAG:
        values = values.astype(bool)
    return name, values.reshape(dims, order="F")


def _struct(parts, dims: tuple[int, ...], endian: str) -> Any:
    width = int(_numeric(*next(parts), endian)[0])  # each name is padded to this length
    names_raw = next(parts)[1]
    fields = [
        names_raw[i : i + width].split(b"\0", 1)[0].decode("latin-1")
        for i in range(0, len(names_raw), width)
    ]
    count = int(np.prod(dims))
    records = np.empty(count, dtype=object)
    for i in range(count):
        records[i] = {field: _matrix(next(parts)[1], endian)[1] for field in fields}
    if count == 1:
        return records[0]
    return records.reshape(dims, order="F")
