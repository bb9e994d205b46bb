"""A synthetic sentiment dataset (`negative` / `positive`) where the picture and the caption each tell part.

Every sample carries its label in the picture, in the caption, or in both, in equal thirds:

- a `positive` picture is bright and warm (sunny yellow / orange), a `negative` one dark and cool (night blue
  / violet), a neutral one grey; each has a few grey shapes on it (noise);
- a `positive` caption has a happy phrase ("best day ever"), a `negative` one a sad phrase ("worst day
  ever"), a neutral one only says where or when ("at the station").

A neutral picture never goes with a neutral caption and the two never disagree, so a model that reads
both can be right every time, while one that sees a single modality has to guess on the third of the
samples where that modality is neutral (about 0.83 accuracy at best).
"""

from __future__ import annotations

import colorsys
import json
import random
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

LABELS = ("negative", "positive")
IMAGE_SIZE = 64
# Which modality carries the label: cycled through, so each is a third of every label's samples.
CLUES = ("both", "image", "text")
# (hue range, saturation range, value range) of the background, per picture mood.
_PICTURES = {
    "positive": ((0.08, 0.17), (0.65, 1.0), (0.85, 1.0)),  # sunny yellow / orange, bright
    "negative": ((0.6, 0.78), (0.5, 0.9), (0.2, 0.4)),  # night blue / violet, dark
    "neutral": ((0.0, 1.0), (0.0, 0.06), (0.45, 0.7)),  # grey
}
_PHRASES = {
    "positive": ("best day ever", "love it", "so happy", "what a wonderful time", "amazing", "great news"),
    "negative": ("worst day ever", "hate it", "so sad", "what an awful time", "terrible", "bad news"),
}
_TOPICS = (
    "at the station",
    "new photo",
    "tuesday morning",
    "just got here",
    "with my sister",
    "view from the window",
    "on the way home",
    "the office",
)
_TEMPLATES = ("{p}", "{p}, {t}", "{t}: {p}", "{p} {t}")


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
        specs = [(label, CLUES[i % len(CLUES)]) for label in LABELS for i in range(per_class)]
        rng.shuffle(specs)  # before naming files, so that names say nothing about labels
        rows = [
            _write_sample(root, f"{split}_{n:05d}", label, clue, rng) for n, (label, clue) in enumerate(specs)
        ]
        with (root / f"{split}.jsonl").open("w", encoding="utf-8") as manifest:
            manifest.writelines(json.dumps(row) + "\n" for row in rows)
    return root


def _write_sample(root: Path, name: str, label: str, clue: str, rng: random.Random) -> dict[str, str]:
    """Draw one image, write it as JPEG and return its manifest row."""
    image_name = f"images/{name}.jpg"
    mood = label if clue in ("both", "image") else "neutral"
    draw_picture(mood, rng).save(root / image_name, format="JPEG", quality=90)
    text = caption(label if clue in ("both", "text") else "neutral", rng)
    return {"image": image_name, "text": text, "label": label}


def draw_picture(mood: str, rng: random.Random) -> Image.Image:
    """A noisy background in the colours of `mood` (a label or "neutral") with a few grey shapes on it."""
    hues, saturations, values = _PICTURES[mood]
    red, green, blue = colorsys.hsv_to_rgb(
        rng.uniform(*hues), rng.uniform(*saturations), rng.uniform(*values)
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
        size = rng.randint(IMAGE_SIZE // 5, IMAGE_SIZE // 3)
        x0, y0 = rng.randint(0, IMAGE_SIZE - size), rng.randint(0, IMAGE_SIZE - size)
        tone = rng.randint(60, 200)
        fill = (tone, tone, tone)
        shape = rng.choice(("ellipse", "rectangle", "triangle"))
        if shape == "ellipse":
            draw.ellipse((x0, y0, x0 + size, y0 + size), fill=fill)
        elif shape == "rectangle":
            draw.rectangle((x0, y0, x0 + size, y0 + size), fill=fill)
        else:
            draw.polygon([(x0, y0 + size), (x0 + size, y0 + size), (x0 + size // 2, y0)], fill=fill)
    return image


def caption(mood: str, rng: random.Random) -> str:
    """A caption for `mood` (a label or "neutral"): a happy or sad phrase with a topic, or the topic alone."""
    topic = rng.choice(_TOPICS)
    if mood == "neutral":
        return topic
    return rng.choice(_TEMPLATES).format(p=rng.choice(_PHRASES[mood]), t=topic)
