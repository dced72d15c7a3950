"""Uploaded query images → float32 arrays, judged by their bytes, never by their name.

Guards run before any pixel is decoded: a size limit per file, content sniffing (PNG, JPEG,
DICOM Part 10 magic numbers; anything else is refused), and a pixel-count limit read from the
image header (PNG/JPEG size, DICOM Rows × Columns × frames), so a small compressed file that
claims a huge image (a decompression bomb) is refused without decompressing it. Decoding then
goes through :func:`radsearch.images.read_image` — the same grey levels as indexing — from a
private temporary file whose name is ours; no request-supplied path ever touches the disk.
"""

from __future__ import annotations

import io
import os
import tempfile
import warnings
from dataclasses import dataclass

import numpy as np

from radsearch.errors import ImageReadError, RadsearchError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"
DICOM_MAGIC_OFFSET = 128


class UploadError(RadsearchError):
    """An upload is refused; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Limits:
    max_file_bytes: int = 32 * 1024 * 1024      # one DX radiograph is typically 5–30 MB
    max_request_bytes: int = 100 * 1024 * 1024
    max_files: int = 8
    max_pixels: int = 50_000_000                # 7000 × 7000; the largest DX detectors are ~4300²


def sniff(data: bytes) -> str:
    """``png`` / ``jpeg`` / ``dicom`` from the first bytes, or UploadError (415)."""
    if data.startswith(PNG_MAGIC):
        return "png"
    if data.startswith(JPEG_MAGIC):
        return "jpeg"
    if data[DICOM_MAGIC_OFFSET:DICOM_MAGIC_OFFSET + 4] == b"DICM":
        return "dicom"
    raise UploadError("upload is not a PNG, JPEG or DICOM (Part 10) image; send the radiograph "
                      "file itself.", status=415)


def decode_upload(data: bytes, label: str, limits: Limits) -> np.ndarray:
    """One upload → float32 (H, W) in [0, 1]; ``label`` (e.g. "image 1") names it in errors."""
    if not data:
        raise UploadError(f"{label}: empty upload.")
    if len(data) > limits.max_file_bytes:
        raise UploadError(f"{label}: {len(data)} bytes exceeds the limit of "
                          f"{limits.max_file_bytes} bytes per image.", status=413)
    kind = sniff(data)
    pixels = _declared_pixels(data, kind, label)
    if pixels > limits.max_pixels:
        raise UploadError(f"{label}: the header declares {pixels} pixels, more than the limit of "
                          f"{limits.max_pixels}; downscale the image.", status=413)
    with tempfile.TemporaryDirectory(prefix="radsearch-upload-") as folder:
        path = os.path.join(folder, "query.dcm" if kind == "dicom" else f"query.{kind}")
        with open(path, "wb") as handle:
            handle.write(data)
        try:
            from radsearch.images import read_image

            return read_image(path)
        except ImageReadError as exc:
            raise UploadError(str(exc).replace(path, label)) from None


def _declared_pixels(data: bytes, kind: str, label: str) -> int:
    if kind == "dicom":
        return _dicom_pixels(data, label)
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as img:   # reads the header only
                width, height = img.size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError
            ) as exc:
        raise UploadError(f"{label}: unreadable {kind.upper()} header ({type(exc).__name__}); "
                          "the file is truncated or corrupt.") from None
    return int(width) * int(height)


def _dicom_pixels(data: bytes, label: str) -> int:
    import pydicom

    try:
        ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
        rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
    except Exception:  # noqa: BLE001 — pydicom raises many types for broken headers
        raise UploadError(f"{label}: unreadable DICOM header; the file is truncated or not "
                          "DICOM.") from None
    if rows <= 0 or cols <= 0:
        raise UploadError(f"{label}: DICOM without image size (Rows/Columns); send an image "
                          "instance.")
    return rows * cols * max(frames, 1) * max(samples, 1)
