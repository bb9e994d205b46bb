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

from PIL import Image, ImageDraw

LABELS = ("match", "mismatch")
IMAGE_SIZE = 64
_WARM_HUES = ((0.0, 0.11), (0.93, 1.0))  # red, orange, yellow-orange, crimson
_COOL_HUES = ((0.47, 0.68),)  # cyan, azure, blue
_WORDS = {
    "warm": (
        "fire", "a sunset", "lava", "embers", "a ripe tomato", "strawberries", "autumn leaves", "a campfire",
        "chili peppers", "a red rose", "flames", "a desert at noon", "an orange", "molten metal", "a red barn",
        "a fire truck", "cherries", "a heat wave",
    ),
    "cool": (
        "the ocean", "a glacier", "the clear sky", "ice", "a frozen lake", "blueberries", "a sapphire",
        "a lagoon", "snow at dusk", "a waterfall", "a blue whale", "mountain mist", "a swimming pool",
        "the arctic sea", "cold rain", "an iceberg", "a blue jay", "a winter morning",
    ),
}  # fmt: skip
_TEMPLATES = (
    "this picture makes me think of {w}",
    "{d}: {w}",
    "reminds me of {w}, {d}",
    "honestly just {w} {d}",
    "{w} vibes today",
    "my friend said it looks like {w}",
    "{d} and somehow {w}",
    "is that {w}? {d}",
    "{w}. {d}",
    "can't stop thinking about {w} {d}",
)
_FILLERS = (
    "lol", "#weekend", "so good", "wow", "with friends", "on my phone", "at the museum", "new wallpaper",
    "from last summer", "no filter", "just saying", "look at this", "#photooftheday", "seen on the way home",
    "again", "what do you think", "totally", "right now",
)  # fmt: skip


def write_demo_dataset(root: Path | str, n_per_class: int = 100, seed: int = 0) -> Path:
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


def _write_sample(root: Path, name: str, label: str, *, warm_image: bool, rng: random.Random) -> dict[str, str]:
    """Draw one image, write it as JPEG and return its manifest row."""
    warm_text = warm_image == (label == "match")
    image_name = f"images/{name}.jpg"
    _draw_image(warm_image, rng).save(root / image_name, format="JPEG", quality=90)
    return {"image": image_name, "text": _caption(warm_text, rng), "label": label}


def _draw_image(warm: bool, rng: random.Random) -> Image.Image:
    """A noisy grey background, a large shape in a warm or cool colour, a few small grey distractors."""
    grey = rng.randint(60, 200)
    image = Image.effect_noise((IMAGE_SIZE, IMAGE_SIZE), rng.uniform(10, 40)).convert("RGB")
    image = Image.blend(Image.new("RGB", image.size, (grey, grey, grey)), image, 0.3)
    draw = ImageDraw.Draw(image)
    for _ in range(rng.randint(0, 3)):
        x, y, r = rng.randint(0, IMAGE_SIZE), rng.randint(0, IMAGE_SIZE), rng.randint(3, 8)
        tone = rng.randint(0, 255)
        draw.ellipse((x - r, y - r, x + r, y + r), fill=(tone, tone, tone))
    low, high = rng.choice(_WARM_HUES if warm else _COOL_HUES)
    red, green, blue = colorsys.hsv_to_rgb(rng.uniform(low, high), rng.uniform(0.6, 1.0), rng.uniform(0.55, 1.0))
    colour = (int(red * 255), int(green * 255), int(blue * 255))
    size = rng.randint(IMAGE_SIZE * 5 // 10, IMAGE_SIZE * 9 // 10)
    x0, y0 = rng.randint(0, IMAGE_SIZE - size), rng.randint(0, IMAGE_SIZE - size)
    box = (x0, y0, x0 + size, y0 + size)
    shape = rng.choice(("ellipse", "rectangle", "triangle"))
    if shape == "ellipse":
        draw.ellipse(box, fill=colour)
    elif shape == "rectangle":
        draw.rectangle(box, fill=colour)
    else:
        draw.polygon([(x0, y0 + size), (x0 + size, y0 + size), (x0 + size // 2, y0)], fill=colour)
    return image


def _caption(warm: bool, rng: random.Random) -> str:
    """A caption naming one warm or cool thing among filler words."""
    word = rng.choice(_WORDS["warm" if warm else "cool"])
    return rng.choice(_TEMPLATES).format(w=word, d=rng.choice(_FILLERS))
