"""Reader for gzipped IDX files (the MNIST / Fashion-MNIST format), validated byte by byte.

Parsing the format ourselves keeps Fashion-MNIST a plain in-memory tensor (no torchvision cache folder,
no download logic) and lets every defect be reported with the file's name.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from sharpvision.data.errors import DataError

_UBYTE = 0x08  # IDX type code of unsigned bytes, the only one Fashion-MNIST uses


def read_idx(path: Path, ndim: int) -> torch.Tensor:
    """The uint8 array stored in the gzipped IDX file ``path``, which must have ``ndim`` dimensions."""
    data = path.read_bytes()
    try:
        raw = gzip.decompress(data)
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
        raise DataError(f"{path}: not a readable gzip file ({e}); the file is truncated or corrupt, "
                        "fetch it again") from None
    expected_magic = (_UBYTE << 8) | ndim
    magic = struct.unpack(">I", raw[:4])[0] if len(raw) >= 4 else None
    if magic != expected_magic:
        found = "none (file too short)" if magic is None else f"0x{magic:08x}"
        raise DataError(f"{path}: bad IDX magic number {found}, expected 0x{expected_magic:08x} "
                        f"(unsigned bytes, {ndim} dimensions); is this the right file?")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: IDX header truncated ({len(raw)} bytes, expected at least {header})")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    expected = header + int(np.prod(shape))
    if len(raw) != expected:
        raise DataError(f"{path}: wrong length: {len(raw)} bytes after decompression, expected {expected} "
                        f"for shape {shape}; the file is truncated or corrupt, fetch it again")
    return torch.from_numpy(np.frombuffer(raw, np.uint8, offset=header).reshape(shape).copy())
