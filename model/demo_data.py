"""A synthetic image+text dataset that only a fusion model can solve (an XOR of colour and caption).

Each image is dominated by a warm (red/orange) or a cool (blue/cyan) colour, and each caption names
something warm ("embers") or cool ("a glacier") among filler words. The label says whether the caption
`match`es the picture or is a `mismatch`. Each label has as many warm as cool images and as many warm as
cool captions, so either modality alone carries no information about the label.
"""

from __future__ import annotations

import colorsys
import json
import random
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

LABELS = ("match", "mismatch")
IMAGE_SIZE = 64
_WARM_HUES = ((0.0, 0.1), (0.96, 1.0))  # red, orange, crimson
_COOL_HUES = ((0.5, 0.66),)  # cyan, azure, blue
# Single words, few of them: a bag-of-words encoder trained from scratch must learn each word's group.
_WORDS = {
    "warm": ("fire", "sunset", "lava", "embers", "flames", "strawberries"),
    "cool": ("ocean", "glacier", "sky", "ice", "snow", "blueberries"),
}
_TEMPLATES = (
    "{w}",
    "{w} {d}",
    "{d} {w}",
    "so much {w}",
    "{w} again",
    "look, {w}",
    "{w} today {d}",
    "thinking of {w}",
)
_FILLERS = ("lol", "wow", "#weekend", "with friends", "no filter", "love it", "so good", "omg")


def write_demo_dataset(root: Path | str, n_per_class: int = 300, seed: int = 0) -> Path:
    """Write train.jsonl, dev.jsonl and images/ under `root` and return `root`.

    `n_per_class` training samples per label; the dev split has a quarter as many (at least 4).
    """
    if n_per_class < 2:
        raise ValueError(f"n_per_class: must be at least 2, got {n_per_class}")
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    for split, per_class in (("train", n_per_class), ("dev", max(4, n_per_class // 4))):
        specs = [(label, i % 2 == 0) for label in LABELS for i in range(per_class)]
        rng.shuffle(specs)  # before naming files, so that names say nothing about labels
        rows = [
            _write_sample(root, f"{split}_{n:05d}", label, warm_image=warm, rng=rng)
            for n, (label, warm) in enumerate(specs)
        ]
        with (root / f"{split}.jsonl").open("w", encoding="utf-8") as manifest:
            manifest.writelines(json.dumps(row) + "\n" for row in rows)
    return root


def _write_sample(
    root: Path, name: str, label: str, *, warm_image: bool, rng: random.Random
) -> dict[str, str]:
    """Draw one image, write it as JPEG and return its manifest row."""
    warm_text = warm_image == (label == "match")
    image_name = f"images/{name}.jpg"
    _draw_image(warm_image, rng).save(root / image_name, format="JPEG", quality=90)
    return {"image": image_name, "text": _caption(warm_text, rng), "label": label}


def _draw_image(warm: bool, rng: random.Random) -> Image.Image:
    """A noisy background in a warm or cool colour with a few grey shapes on it (shape and tone are noise)."""
    low, high = rng.choice(_WARM_HUES if warm else _COOL_HUES)
    red, green, blue = colorsys.hsv_to_rgb(
        rng.uniform(low, high), rng.uniform(0.6, 1.0), rng.uniform(0.55, 1.0)
    )
    background = Image.new(
        "RGB", (IMAGE_SIZE, IMAGE_SIZE), (int(red * 255), int(green * 255), int(blue * 255))
    )
    grain = np.random.default_rng(rng.getrandbits(32)).normal(
        128, rng.uniform(10, 40), (IMAGE_SIZE, IMAGE_SIZE, 3)
    )
    noise = Image.fromarray(grain.clip(0, 255).astype(np.uint8), mode="RGB")
    image = Image.blend(background, noise, 0.15)
    draw = ImageDraw.Draw(image)
    for _ in range(rng.randint(1, 3)):
        size = rng.randint(IMAGE_SIZE // 5, IMAGE_SIZE // 2)
        x0, y0 = rng.randint(0, IMAGE_SIZE - size), rng.randint(0, IMAGE_SIZE - size)
        tone = rng.randint(0, 255)
        fill = (tone, tone, tone)
        shape = rng.choice(("ellipse", "rectangle", "triangle"))
        if shape == "ellipse":
            draw.ellipse((x0, y0, x0 + size, y0 + size), fill=fill)
        elif shape == "rectangle":
            draw.rectangle((x0, y0, x0 + size, y0 + size), fill=fill)
        else:
            draw.polygon([(x0, y0 + size), (x0 + size, y0 + size), (x0 + size // 2, y0)], fill=fill)
    return image


def _caption(warm: bool, rng: random.Random) -> str:
    """A caption naming one warm or cool thing among filler words."""
    word = rng.choice(_WORDS["warm" if warm else "cool"])
    return rng.choice(_TEMPLATES).format(w=word, d=rng.choice(_FILLERS))
