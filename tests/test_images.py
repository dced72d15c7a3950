"""read_image: grey levels of PNG / JPEG / DICOM files against values computed by hand."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (ExplicitVRLittleEndian, JPEG2000Lossless, SecondaryCaptureImageStorage,
                         generate_uid)

from radsearch.errors import ImageReadError
from radsearch.images import read_image

RNG = np.random.default_rng(0)


# ----------------------------------------------------------------- PNG / JPEG
def test_png_8bit_is_divided_by_255(tmp_path):
    pixels = RNG.integers(0, 256, (20, 30), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    image = read_image(tmp_path / "a.png")
    assert image.dtype == np.float32 and image.shape == (20, 30)
    np.testing.assert_allclose(image, pixels / 255.0, atol=1e-7)


def test_png_16bit_keeps_full_precision(tmp_path):
    pixels = RNG.integers(0, 65536, (17, 23), dtype=np.uint16)
    pixels[0, 0], pixels[0, 1] = 0, 65535
    Image.fromarray(pixels).save(tmp_path / "a16.png")
    assert Image.open(tmp_path / "a16.png").mode.startswith("I")  # really a 16-bit file
    image = read_image(tmp_path / "a16.png")
    np.testing.assert_allclose(image, pixels / 65535.0, atol=1e-7)
    assert image.min() == 0.0 and image.max() == 1.0


def test_rgb_png_becomes_luminance(tmp_path):
    rgb = RNG.integers(0, 256, (8, 9, 3), dtype=np.uint8)
    Image.fromarray(rgb, "RGB").save(tmp_path / "c.png")
    rgb = rgb.astype(np.int64)
    expected = (rgb[..., 0] * 299 + rgb[..., 1] * 587 + rgb[..., 2] * 114) / 1000 / 255  # ITU-R 601
    np.testing.assert_allclose(read_image(tmp_path / "c.png"), expected, atol=1.5 / 255)


def test_jpeg_8bit_close_to_source(tmp_path):
    y, x = np.mgrid[0:64, 0:64]
    pixels = (127 + 100 * np.sin(x / 9.0) * np.cos(y / 7.0)).astype(np.uint8)
    Image.fromarray(pixels).save(tmp_path / "a.jpg", quality=95)
    image = read_image(tmp_path / "a.jpg")
    assert image.shape == (64, 64)
    assert np.abs(image - pixels / 255.0).mean() < 0.01  # lossy, but the same picture


@pytest.mark.parametrize("content, why", [
    (b"", "empty"),
    (b"patient,image\n1,a.png\n" * 20, "not an image"),
])
def test_empty_and_text_files_raise_naming_the_file(tmp_path, content, why):
    path = tmp_path / f"bad_{len(content)}.png"
    path.write_bytes(content)
    with pytest.raises(ImageReadError, match=f"{path.name}.*{why}"):
        read_image(path)


def test_truncated_png_raises_naming_the_file(tmp_path):
    Image.fromarray(RNG.integers(0, 256, (64, 64), dtype=np.uint8)).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match="cut.png.*truncated or corrupt"):
        read_image(tmp_path / "cut.png")


def test_missing_file_and_folder_raise(tmp_path):
    with pytest.raises(ImageReadError, match="nope.png.*not found"):
        read_image(tmp_path / "nope.png")
    with pytest.raises(ImageReadError, match="not a file"):
        read_image(tmp_path)


# ---------------------------------------------------------------------- DICOM
def _dicom(pixels: np.ndarray, bits_stored: int = 12, signed: bool = False,
           photometric: str = "MONOCHROME2", **tags) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.PatientName = "Doe^Jane"  # PHI that must never reach a message
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, bits_stored, bits_stored - 1
    ds.PixelRepresentation = int(signed)
    for key, value in tags.items():
        setattr(ds, key, value)
    ds.PixelData = pixels.astype(np.int16 if signed else np.uint16).tobytes()
    return ds


def _save(ds: Dataset, path) -> None:
    ds.save_as(path, enforce_file_format=True)


def test_dicom_12bit_scaled_by_stored_range_not_65535(tmp_path):
    pixels = RNG.integers(0, 4096, (16, 12)).astype(np.uint16)
    pixels[0, :2] = (0, 4095)
    _save(_dicom(pixels), tmp_path / "a.dcm")
    np.testing.assert_allclose(read_image(tmp_path / "a.dcm"), pixels / 4095.0, atol=1e-6)


def test_dicom_monochrome1_is_inverted(tmp_path):
    pixels = RNG.integers(0, 4096, (16, 12)).astype(np.uint16)
    _save(_dicom(pixels, photometric="MONOCHROME1"), tmp_path / "m1.dcm")
    np.testing.assert_allclose(read_image(tmp_path / "m1.dcm"), 1.0 - pixels / 4095.0, atol=1e-6)


def test_dicom_rescale_slope_intercept_maps_range(tmp_path):
    # stored 0..1023 (10 bits) → modality values 2·x − 1024 ∈ [−1024, 1022]; scaled over that range
    pixels = RNG.integers(0, 1024, (10, 10)).astype(np.uint16)
    _save(_dicom(pixels, bits_stored=10, RescaleSlope=2, RescaleIntercept=-1024),
          tmp_path / "r.dcm")
    expected = (2.0 * pixels - 1024 + 1024) / (2.0 * 1023)
    np.testing.assert_allclose(read_image(tmp_path / "r.dcm"), expected, atol=1e-6)


def test_dicom_signed_pixels(tmp_path):
    pixels = RNG.integers(-2048, 2048, (9, 11)).astype(np.int16)
    _save(_dicom(pixels, signed=True), tmp_path / "s.dcm")
    np.testing.assert_allclose(read_image(tmp_path / "s.dcm"), (pixels + 2048) / 4095.0,
                               atol=1e-6)


def test_dicom_linear_window(tmp_path):
    # DICOM PS3.3 C.11.2.1.2.1: below c−0.5−(w−1)/2 → 0, above c−0.5+(w−1)/2 → 1, linear between.
    pixels = np.arange(0, 4096, 16, dtype=np.uint16).reshape(16, 16)
    center, width = 2000.0, 1001.0
    _save(_dicom(pixels, WindowCenter=center, WindowWidth=width), tmp_path / "w.dcm")
    x = pixels.astype(np.float64)
    expected = np.clip(((x - (center - 0.5)) / (width - 1) + 0.5), 0.0, 1.0)
    expected[x <= center - 0.5 - (width - 1) / 2] = 0.0
    expected[x > center - 0.5 + (width - 1) / 2] = 1.0
    image = read_image(tmp_path / "w.dcm")
    np.testing.assert_allclose(image, expected, atol=1e-6)
    assert 0 < (image == 0).sum() and 0 < (image == 1).sum()  # the window really clips


def test_dicom_voi_lut_sequence_preferred_over_window(tmp_path):
    pixels = np.arange(64, dtype=np.uint16).reshape(8, 8)
    lut = (np.arange(64) ** 2 // 4).astype(np.uint16)  # 0..992, a non-linear LUT
    item = Dataset()
    item.LUTDescriptor = [64, 0, 10]  # 64 entries, first maps 0, 10 bits per entry
    item.add_new(0x00283006, "US", lut.tolist())  # LUT Data, US so no byte order question
    ds = _dicom(pixels, bits_stored=6, WindowCenter=10, WindowWidth=4)
    ds.VOILUTSequence = [item]
    _save(ds, tmp_path / "lut.dcm")
    np.testing.assert_allclose(read_image(tmp_path / "lut.dcm"), lut[pixels] / 1023.0, atol=1e-6)


def test_dicom_jpeg2000_lossless(tmp_path):
    pixels = (np.arange(64 * 64).reshape(64, 64) * 7 % 4096).astype(np.uint16)
    ds = _dicom(pixels)
    ds.compress(JPEG2000Lossless)  # encoded by pylibjpeg-openjpeg, offline
    _save(ds, tmp_path / "j2k.dcm")
    np.testing.assert_allclose(read_image(tmp_path / "j2k.dcm"), pixels / 4095.0, atol=1e-6)


def test_dicom_without_extension_or_preamble(tmp_path):
    pixels = RNG.integers(0, 4096, (6, 7)).astype(np.uint16)
    _save(_dicom(pixels), tmp_path / "IM0001")  # DICM magic, no suffix
    np.testing.assert_allclose(read_image(tmp_path / "IM0001"), pixels / 4095.0, atol=1e-6)
    _dicom(pixels).save_as(tmp_path / "IM0002", enforce_file_format=False)  # no preamble
    np.testing.assert_allclose(read_image(tmp_path / "IM0002"), pixels / 4095.0, atol=1e-6)


def test_broken_dicom_files_raise_without_phi(tmp_path):
    pixels = RNG.integers(0, 4096, (32, 32)).astype(np.uint16)
    _save(_dicom(pixels), tmp_path / "full.dcm")
    data = (tmp_path / "full.dcm").read_bytes()
    (tmp_path / "cut.dcm").write_bytes(data[: len(data) - 1000])
    with pytest.raises(ImageReadError, match="cut.dcm") as info:
        read_image(tmp_path / "cut.dcm")
    assert "Doe" not in str(info.value)

    ds = _dicom(pixels)
    del ds.PixelData
    _save(ds, tmp_path / "nopixels.dcm")
    with pytest.raises(ImageReadError, match="nopixels.dcm.*no pixel data"):
        read_image(tmp_path / "nopixels.dcm")

    (tmp_path / "junk.dcm").write_bytes(b"\x00" * 128 + b"DICM" + b"\xff" * 7)
    with pytest.raises(ImageReadError, match="junk.dcm"):
        read_image(tmp_path / "junk.dcm")


def test_dicom_window_after_rescale_uses_modality_units(tmp_path):
    # CT-like: HU = stored − 1024; window centre 40 HU, width 400 HU → [−160, 240] HU onto [0, 1].
    pixels = np.arange(0, 4096, 16, dtype=np.uint16).reshape(16, 16)
    _save(_dicom(pixels, RescaleSlope=1, RescaleIntercept=-1024, WindowCenter=40,
                 WindowWidth=400), tmp_path / "ct.dcm")
    hu = pixels.astype(np.float64) - 1024
    expected = np.clip((hu - 39.5) / 399 + 0.5, 0.0, 1.0)
    np.testing.assert_allclose(read_image(tmp_path / "ct.dcm"), expected, atol=1e-6)
