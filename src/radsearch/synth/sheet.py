"""Contact sheets: a grid of phantom images with captions, to look at what the generators draw.

``knee_sheet`` shows a few subjects (both knees, every visit) chosen to include progression and a
knee replacement; ``chest_sheet`` shows several subjects across visits with their findings as
captions. The docs' pictures (docs/images/synth_*.png) are made by ``radsearch synth sheet``.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from radsearch.errors import DataError
from radsearch.io import atomic_path


def contact_sheet(images: list[list[np.ndarray | None]], captions: list[list[str]],
                  path: str | Path, tile: int = 160, row_titles: list[str] | None = None,
                  caption_lines: int = 1) -> Path:
    """Write a PNG grid: ``images[r][c]`` (uint8, any size, None = empty cell) over its caption."""
    if not images or not any(images):
        raise DataError(f"{path}: nothing to draw on the contact sheet.")
    font = _font(max(10, tile // 13))
    line_h = font.size + 3 if hasattr(font, "size") else 13
    cap_h = line_h * caption_lines + 4
    title_w = 0 if row_titles is None else tile // 2
    n_cols = max(len(r) for r in images)
    sheet = Image.new("L", (title_w + n_cols * (tile + 4) + 4, len(images) * (tile + cap_h + 4) + 4),
                      color=255)
    draw = ImageDraw.Draw(sheet)
    for r, row in enumerate(images):
        top = 4 + r * (tile + cap_h + 4)
        if row_titles is not None:
            draw.text((4, top + tile // 2), row_titles[r], fill=0, font=font)
        for c, pixels in enumerate(row):
            left = title_w + 4 + c * (tile + 4)
            if pixels is None:
                continue
            sheet.paste(Image.fromarray(pixels).resize((tile, tile), Image.Resampling.LANCZOS),
                        (left, top))
            text = captions[r][c]
            wrapped = textwrap.wrap(text, width=max(8, int(tile / (0.55 * line_h))))[:caption_lines]
            for k, line in enumerate(wrapped):
                draw.text((left + 2, top + tile + 2 + k * line_h), line, fill=0, font=font)
    path = Path(path)
    with atomic_path(path) as tmp:
        sheet.save(tmp, format="PNG", optimize=True)
    return path


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one bitmap size
        return ImageFont.load_default()


def knee_sheet(path: str | Path, seed: int = 0, image_size: int = 256, tile: int = 150) -> Path:
    """Four subjects x both knees x seven visits: one stable, two progressing, one replaced."""
    from radsearch.synth.knee import VISIT_MONTHS, generate_knee

    synth = generate_knee(60, seed=seed, image_size=image_size)
    table = synth.cohort.table
    per_knee = table.groupby(["subject", "side"]).agg(kl0=("kl", "first"), kl1=("kl", "last"),
                                                      tkr=("tkr", "max"))
    per_subject = per_knee.groupby(level=0).agg(gain=("kl1", "max"), tkr=("tkr", "max"),
                                                kl0=("kl0", "min"))
    per_subject["gain"] -= per_knee.groupby(level=0)["kl0"].max()
    chosen: list[str] = []
    for pick in (per_subject[per_subject.tkr == 1].index[:1],
                 per_subject[per_subject.tkr == 0].sort_values("gain", ascending=False).index[:2],
                 per_subject[(per_subject.tkr == 0) & (per_subject.gain == 0)].index[:1]):
        chosen += [s for s in pick if s not in chosen]
    images, captions, titles = [], [], []
    for subject in chosen:
        for side in ("R", "L"):
            rows = table[(table.subject == subject) & (table.side == side)]
            images.append([synth.images[i] for i in rows.index])  # type: ignore[index]
            captions.append([f"{m // 12}y KL{kl}" + (" (TKR)" if tkr else "")
                             for m, kl, tkr in zip(rows.visit_months, rows.kl, rows.tkr)])
            titles.append(f"{subject}\n{side}")
    assert len(images[0]) == len(VISIT_MONTHS)
    return contact_sheet(images, captions, path, tile=tile, row_titles=titles)


SHORT = {"No Finding": "normal", "Enlarged Cardiomediastinum": "wide med.",
         "Cardiomegaly": "big heart", "Lung Opacity": "opacity", "Lung Lesion": "nodule",
         "Edema": "edema", "Consolidation": "consolid.", "Pneumonia": "pneumonia",
         "Atelectasis": "atelectasis", "Pneumothorax": "pneumothorax",
         "Pleural Effusion": "effusion", "Pleural Other": "pl. thick.", "Fracture": "fracture",
         "Support Devices": "devices"}


def chest_sheet(path: str | Path, seed: int = 0, image_size: int = 256, tile: int = 160,
                n_rows: int = 6, n_cols: int = 6) -> Path:
    """Subjects x visits (first image of each study), captioned with years, view and findings.

    Rows are the subjects whose studies cover the most different findings, so the sheet shows
    findings appearing and resolving.
    """
    from radsearch.synth.chest import generate_chest

    synth = generate_chest(60, seed=seed, image_size=image_size)
    table = synth.cohort.table
    first = table.drop_duplicates("study")
    variety = first.groupby("subject")["labels"].agg(
        lambda s: len(set("|".join(s).split("|"))) + 0.5 * s.nunique())
    chosen = variety.sort_values(ascending=False, kind="stable").index[:n_rows]
    images, captions, titles = [], [], []
    for subject in sorted(chosen):
        rows = first[first.subject == subject].head(n_cols)
        images.append([synth.images[i] for i in rows.index])  # type: ignore[index]
        captions.append([f"{t:.1f}y {v}: " + ", ".join(SHORT[x] for x in labels.split("|"))
                         for t, v, labels in zip(rows.time, rows.view, rows.labels)])
        titles.append(subject)
    return contact_sheet(images, captions, path, tile=tile, row_titles=titles, caption_lines=5)
