"""Read any radiograph file (PNG / JPEG 8- or 16-bit, DICOM) into one float32 array in [0, 1].

Everything downstream (transforms, models, the web page) sees the same grey levels whatever the
source format: 0 is black (no attenuation shown), 1 is white, whatever the bit depth or the DICOM
photometric interpretation. A file that cannot be read raises ``ImageReadError`` naming it, so a
training run stops on the broken file instead of on an obscure decoder traceback.

DICOM follows the standard display pipeline: stored values → modality LUT (rescale slope and
intercept, or LUT) → VOI LUT (LUT sequence, else window centre/width with its VOI LUT function) →
scaling by the range that stage can produce (derived from BitsStored, not 65535) → inversion for
MONOCHROME1.
JPEG 2000 and JPEG-LS pixel data are decoded by the pylibjpeg plugins when installed.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from radsearch.errors import ImageReadError

DICOM_SUFFIXES = (".dcm", ".dicom", ".dic")
_DICOM_MAGIC_OFFSET = 128


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Decode one image file to a float32 (H, W) array in [0, 1].

    PNG/JPEG/TIFF go through Pillow (8-bit ÷ 255, 16-bit ÷ 65535, colour → luminance); DICOM goes
    through pydicom with modality and VOI LUTs. Raises ``ImageReadError`` (naming the file) for a
    missing, empty, truncated, corrupt or non-image file.
    """
    path = Path(path)
    if not path.exists():
        raise ImageReadError(f"{path}: image file not found. Check the manifest's 'image' column "
                             "and the folder it is resolved against.")
    if not path.is_file():
        raise ImageReadError(f"{path}: is not a file (a folder?). The 'image' column must name "
                             "one image file per row.")
    size = path.stat().st_size
    if size == 0:
        raise ImageReadError(f"{path}: file is empty (0 bytes); re-copy or re-export it.")
    if _looks_like_dicom(path):
        image = _read_dicom(path)
    else:
        image = _read_pillow(path)
    if image.ndim != 2 or min(image.shape) == 0:
        raise ImageReadError(f"{path}: decoded to shape {image.shape}, expected one 2-D greyscale "
                             "image.")
    if not np.isfinite(image).all():
        raise ImageReadError(f"{path}: decoded pixel values contain NaN or infinity.")
    return np.ascontiguousarray(image, dtype=np.float32)


def check_image(path: str | os.PathLike, full: bool = False) -> str | None:
    """None when the file looks like a whole image, else a one-line reason (no exception).

    Cheap by default: the header must identify an image and the structure must be complete (PNG
    chunks and checksums via Pillow's ``verify``, the JPEG end-of-image marker, DICOM pixel data
    as long as Rows × Columns × samples × bits say). ``full=True`` decodes with ``read_image``.
    """
    path = Path(path)
    try:
        if full or not path.is_file() or path.stat().st_size == 0:
            read_image(path)
            return None
        if _looks_like_dicom(path):
            return _check_dicom(path)
        try:
            with Image.open(path) as img:
                kind = img.format
                img.verify()
        except UnidentifiedImageError:
            read_image(path)  # DICOM without preamble, or "not an image"
            return None
        if kind == "JPEG" and not _ends_with(path, b"\xff\xd9"):
            return "truncated JPEG (no end-of-image marker); re-copy or re-export it"
        return None
    except ImageReadError as exc:
        return str(exc).removeprefix(f"{path}: ")
    except Exception as exc:  # noqa: BLE001 — Pillow / pydicom raise many types for bad bytes
        return f"cannot read the image ({type(exc).__name__}: {exc}); the file is truncated or " \
               "corrupt"


def _ends_with(path: Path, tail: bytes) -> bool:
    with open(path, "rb") as fh:
        fh.seek(-len(tail), os.SEEK_END)
        return fh.read() == tail


def _check_dicom(path: Path) -> str | None:
    import pydicom

    try:
        ds = pydicom.dcmread(path, force=True)
    except Exception as exc:  # noqa: BLE001
        return f"cannot parse as DICOM ({exc}); the file is truncated or not DICOM"
    if "PixelData" not in ds:
        return "DICOM file has no pixel data"
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if syntax is None or not syntax.is_compressed:
        expected = (int(ds.get("Rows", 0)) * int(ds.get("Columns", 0))
                    * int(ds.get("SamplesPerPixel", 1)) * int(ds.get("NumberOfFrames", 1) or 1)
                    * int(ds.get("BitsAllocated", 16)) + 7) // 8
        if len(ds.PixelData) < expected:
            return (f"DICOM pixel data truncated ({len(ds.PixelData)} of {expected} bytes); "
                    "re-copy or re-export it")
    return None


# ------------------------------------------------------------------ Pillow
# Divisor that maps each Pillow greyscale mode onto [0, 1].
_PILLOW_SCALE = {"1": 1.0, "L": 255.0, "P": 255.0, "I;16": 65535.0, "I;16L": 65535.0,
                 "I;16B": 65535.0, "I;16N": 65535.0}


def _read_pillow(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as img:
            img.load()  # decode now: truncated / corrupt data fail here, not later
            array = _pillow_to_unit(img, path)
    except UnidentifiedImageError:
        return _read_dicom_without_preamble_or_fail(path)
    except ImageReadError:
        raise
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
        raise ImageReadError(f"{path}: cannot decode the image ({exc}); the file is truncated or "
                             "corrupt — re-copy or re-export it.") from exc
    return array


def _pillow_to_unit(img: Image.Image, path: Path) -> np.ndarray:
    mode = img.mode
    if mode in ("RGB", "RGBA", "CMYK", "YCbCr", "LA", "PA", "P", "LAB", "HSV"):
        img = img.convert("L")  # ITU-R 601 luminance; radiographs saved as colour are grey anyway
        mode = "L"
    if mode in _PILLOW_SCALE:
        return np.asarray(img, dtype=np.float32) / np.float32(_PILLOW_SCALE[mode])
    if mode == "I":  # 32-bit integer; 16-bit PNGs decode to it in some Pillow versions
        values = np.asarray(img, dtype=np.int64)
        if values.min() < 0 or values.max() > 65535:
            raise ImageReadError(f"{path}: 32-bit integer pixels outside 0..65535; "
                                 "convert the image to 8- or 16-bit greyscale.")
        return (values / 65535.0).astype(np.float32)
    if mode == "F":
        values = np.asarray(img, dtype=np.float32)
        if values.min() < 0 or values.max() > 1:
            raise ImageReadError(f"{path}: floating-point pixels outside [0, 1]; "
                                 "rescale the image or save it as 8- or 16-bit greyscale.")
        return values
    raise ImageReadError(f"{path}: unsupported pixel mode {mode!r}; save it as 8- or "
                         "16-bit greyscale PNG.")


# ------------------------------------------------------------------- DICOM
def _looks_like_dicom(path: Path) -> bool:
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    with open(path, "rb") as fh:
        head = fh.read(_DICOM_MAGIC_OFFSET + 4)
    return head[_DICOM_MAGIC_OFFSET:] == b"DICM"


def _read_dicom_without_preamble_or_fail(path: Path) -> np.ndarray:
    """Files that Pillow cannot identify may still be DICOM without the 128-byte preamble."""
    import pydicom

    try:
        ds = pydicom.dcmread(path, force=True)
        if "PixelData" in ds:
            return _dicom_to_unit(ds, path)
    except ImageReadError:
        raise
    except Exception:  # noqa: BLE001 — pydicom raises many types for non-DICOM bytes
        pass
    raise ImageReadError(f"{path}: not an image (neither PNG/JPEG/TIFF nor DICOM). Check that "
                         "the manifest's 'image' column points at image files.")


def _read_dicom(path: Path) -> np.ndarray:
    import pydicom

    try:
        ds = pydicom.dcmread(path, force=True)
    except Exception as exc:  # noqa: BLE001 — InvalidDicomError, EOFError, struct errors...
        raise ImageReadError(f"{path}: cannot parse as DICOM ({exc}); the file is truncated or "
                             "not DICOM.") from exc
    if "PixelData" not in ds:
        raise ImageReadError(f"{path}: DICOM file has no pixel data (a report or structured "
                             "document?); list only image instances in the manifest.")
    return _dicom_to_unit(ds, path)


def _dicom_to_unit(ds, path: Path) -> np.ndarray:
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise ImageReadError(f"{path}: PhotometricInterpretation {photometric} is not greyscale; "
                             "radiographs must be MONOCHROME1 or MONOCHROME2.")
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        raise ImageReadError(f"{path}: multi-frame DICOM ({frames} frames); export the frame "
                             "you want as a single-frame image.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom warns on harmless header quirks
            stored = ds.pixel_array
    except Exception as exc:  # noqa: BLE001 — missing decoder plugin, truncated pixel data...
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        raise ImageReadError(f"{path}: cannot decode DICOM pixel data"
                             f"{_decoder_cause(syntax, exc)}") from exc

    low, high = _modality_range(ds)
    values = apply_modality_lut(stored, ds)
    if ds.get("VOILUTSequence"):
        values = apply_voi_lut(values if np.issubdtype(values.dtype, np.integer)
                               else np.rint(values).astype(np.int64), ds, prefer_lut=True)
        low, high = 0.0, float(2 ** int(ds.VOILUTSequence[0].LUTDescriptor[2]) - 1)
    elif "WindowCenter" in ds and "WindowWidth" in ds:
        try:
            values = apply_voi_lut(values, ds)  # maps onto the modality output range [low, high]
        except ValueError as exc:
            raise ImageReadError(f"{path}: invalid VOI window ({exc}).") from exc
    if high <= low:
        raise ImageReadError(f"{path}: empty output range [{low}, {high}] from BitsStored / "
                             "rescale tags; check BitsStored and RescaleSlope.")
    unit = np.clip((np.asarray(values, dtype=np.float64) - low) / (high - low), 0.0, 1.0)
    if photometric == "MONOCHROME1":  # minimum value shown white: invert so 1 is always white
        unit = 1.0 - unit
    return unit.astype(np.float32)


def _decoder_cause(syntax, exc: Exception) -> str:
    """One line: the transfer syntax, what went wrong and the decoder package it needs.

    pydicom lists every plugin's complaint over several lines ("SIZ marker length must be at
    least 38"); inside a DataLoader worker only that text used to reach the user.
    """
    from pydicom import uid

    text = " ".join(str(exc).split())
    if syntax is None:
        return f": {text}"
    needs = ("pylibjpeg + pylibjpeg-openjpeg" if syntax in uid.JPEG2000TransferSyntaxes else
             "pylibjpeg + pylibjpeg-libjpeg (or pyjpegls)" if syntax in uid.JPEGLSTransferSyntaxes
             else "pylibjpeg + pylibjpeg-libjpeg (or Pillow)" if syntax in uid.JPEGTransferSyntaxes
             else "pylibjpeg + pylibjpeg-rle" if syntax in uid.RLETransferSyntaxes else None)
    if "missing dependencies" in text or "no pixel data handler" in text.lower():
        install = f"install {needs}" if needs else "no installed decoder supports it"
        return f" ({syntax.name}): no decoder installed; {install}. ({text})"
    return (f" ({syntax.name}): the compressed pixel data are corrupt or truncated; re-export the "
            f"file. Decoder said: {text}")


def _modality_range(ds) -> tuple[float, float]:
    """Lowest and highest value the modality LUT stage can produce, from the stored bit depth."""
    if ds.get("ModalityLUTSequence"):
        bits = int(ds.ModalityLUTSequence[0].LUTDescriptor[2])
        return 0.0, float(2 ** bits - 1)
    bits = int(ds.get("BitsStored", ds.get("BitsAllocated", 16)))
    if int(ds.get("PixelRepresentation", 0)) == 0:
        low, high = 0.0, float(2 ** bits - 1)
    else:
        low, high = float(-(2 ** (bits - 1))), float(2 ** (bits - 1) - 1)
    slope, intercept = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
    if slope is not None and intercept is not None:
        low, high = sorted((low * float(slope) + float(intercept),
                            high * float(slope) + float(intercept)))
    return low, high


def require_min_side(image: np.ndarray, where, min_side: int | None) -> np.ndarray:
    """Refuse an image smaller than the network's input crop: it would be upsampled into mush."""
    if min_side and min(image.shape[:2]) < min_side:
        raise ImageReadError(f"{where}: {image.shape[1]}×{image.shape[0]} pixels, smaller than "
                             f"the {min_side}-pixel network input; list only real radiographs "
                             "(or thumbnails at least that large).")
    return image
