"""Opening images no larger than they are needed.

A small file can hold an enormous picture: a flat 6300×6300 PNG is 140 KB on disk and 119 MB
decoded. Where Pillow can, the picture is decoded already reduced:
- JPEG decodes at 1/2, 1/4 or 1/8 scale straight from its DCT coefficients (`Image.draft`),
  so the full-size picture never exists in memory;
- PNG, WebP, BMP and GIF have no reduced decode in Pillow: they decode in full. What bounds
  their cost is a pixel cap judged from the header before decoding, and decoding one at a
  time; callers shrink them at once (a model's preprocessing, a thumbnail) and drop the
  full-size picture.

Only Pillow: the web process uses this too, and never imports torch.
"""

from __future__ import annotations

from PIL import Image

# Decode at least this many times the wanted size, as Pillow's own `thumbnail` does: the
# final resize then still averages several source pixels per output pixel.
REDUCING_GAP = 2


def draft(image: Image.Image, shorter_side: int) -> tuple[int, int]:
    """Make a freshly opened (not yet loaded) JPEG decode at the smallest of 1/1, 1/2, 1/4, 1/8
    scale that keeps both sides at least REDUCING_GAP × `shorter_side`; other formats are left
    as they are. Returns the size the image will decode at (`image.size` is updated too)."""
    if image.format == "JPEG":
        wanted = max(1, shorter_side * REDUCING_GAP)
        image.draft(None, (wanted, wanted))
    return image.size


def decode_smallest(image: Image.Image) -> None:
    """Decode every byte of a freshly opened image at the smallest size its format allows (a
    JPEG at 1/8 scale): truncated or corrupt data raises as a full decode would, since the
    whole compressed stream is still read, but a huge JPEG costs a sixty-fourth of the
    memory. What upload checks use to catch corrupt files."""
    draft(image, 1)
    image.load()
