"""Tests for model.images: decoding real image bytes and the pixel transforms."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fusion_testkit.factories import (
    encode_image,
    make_image,
    make_jpeg,
    make_png,
    png_header_only,
    tiny_model_config,
)
from model.images import ImageDecodeError, ImageTransform, load_image

RED = (200, 40, 40)
REPO = Path(__file__).resolve().parents[2]


def _close(actual: object, expected: object, tol: int = 8) -> bool:
    assert isinstance(actual, tuple) and isinstance(expected, tuple)
    return all(abs(a - e) <= tol for a, e in zip(actual, expected, strict=True))


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF", "BMP"])
def test_supported_formats_decode_to_rgb(fmt: str) -> None:
    img = load_image(encode_image(make_image(RED, (40, 24)), fmt))
    assert img.mode == "RGB"
    assert img.size == (40, 24)
    assert _close(img.getpixel((0, 0)), RED, tol=12)


def test_path_source_is_read(tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    path.write_bytes(make_png(RED))
    assert load_image(path).getpixel((0, 0)) == RED


def test_gif_gives_its_first_frame() -> None:
    frames = [Image.new("RGB", (16, 16), (255, 0, 0)), Image.new("RGB", (16, 16), (0, 0, 255))]
    data = encode_image(frames[0], "GIF", save_all=True, append_images=frames[1:])
    assert load_image(data).getpixel((8, 8)) == (255, 0, 0)


def test_transparent_pixels_are_composited_on_white() -> None:
    data = encode_image(Image.new("RGBA", (8, 8), (255, 0, 0, 0)), "PNG")
    assert load_image(data).getpixel((0, 0)) == (255, 255, 255)


def test_palette_with_transparency_is_composited_on_white() -> None:
    img = Image.new("P", (8, 8), 0)
    img.putpalette([10, 20, 30] * 256)
    data = encode_image(img, "PNG", transparency=0)
    assert load_image(data).getpixel((0, 0)) == (255, 255, 255)


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGBA"])
def test_png_modes_keep_their_colours(mode: str) -> None:
    expected = make_image(RED, mode=mode).convert("RGB").getpixel((0, 0))
    assert _close(load_image(make_png(RED, mode=mode)).getpixel((0, 0)), expected, tol=2)


def test_sixteen_bit_grayscale_is_rescaled_not_clipped() -> None:
    data = encode_image(Image.fromarray(np.full((4, 4), 100 * 257, dtype=np.uint16)), "PNG")
    assert load_image(data).getpixel((0, 0)) == (100, 100, 100)


def test_cmyk_jpeg_becomes_rgb() -> None:
    img = load_image(make_jpeg(RED, mode="CMYK"))
    assert img.mode == "RGB"
    assert _close(img.getpixel((0, 0)), RED, tol=12)


def test_exif_orientation_is_applied() -> None:
    assert load_image(make_jpeg(size=(40, 20), exif_orientation=6)).size == (20, 40)


def test_png_bomb_header_is_rejected_before_decoding() -> None:
    with pytest.raises(ImageDecodeError) as err:
        load_image(png_header_only(50_000, 50_000))
    assert err.value.reason == "too_many_pixels"


def test_max_pixels_is_enforced() -> None:
    with pytest.raises(ImageDecodeError) as err:
        load_image(make_jpeg(size=(64, 64)), max_pixels=64 * 63)
    assert err.value.reason == "too_many_pixels"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"just some text, not an image\n", "unsupported_format"),
        (b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"></svg>', "unsupported_format"),
        (b"%PDF-1.4\n1 0 obj <<>> endobj\n", "unsupported_format"),
        (encode_image(make_image(RED), "TIFF"), "unsupported_format"),
    ],
)
def test_non_images_are_rejected_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(ImageDecodeError) as err:
        load_image(data)
    assert err.value.reason == reason
    assert isinstance(err.value, ValueError)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_files_are_rejected(fmt: str) -> None:
    rng = np.random.default_rng(0)
    data = encode_image(Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)), fmt)
    with pytest.raises(ImageDecodeError) as err:
        load_image(data[: len(data) // 2])
    assert err.value.reason == "truncated"


def test_jpeg_draft_decodes_at_reduced_scale_but_not_below_the_requested_size() -> None:
    img = load_image(make_jpeg(size=(2000, 1000)), draft_size=224)
    assert 224 <= min(img.size) < 1000
    assert img.size[0] == 2 * img.size[1]


def test_eval_transform_resizes_crops_and_normalises() -> None:
    config = tiny_model_config(image_size=32, image_mean=(0.5, 0.5, 0.5), image_std=(0.25, 0.25, 0.25))
    out = ImageTransform(config, train=False)(Image.new("RGB", (80, 40), (255, 255, 255)))
    assert out.shape == (3, 32, 32)
    assert torch.allclose(out, torch.full_like(out, 2.0))


def test_train_transform_is_random_with_the_eval_shape() -> None:
    transform = ImageTransform(tiny_model_config(image_size=32), train=True)
    image = load_image(make_jpeg(size=(80, 48)))
    torch.manual_seed(0)
    first = transform(image)
    torch.manual_seed(1)
    second = transform(image)
    assert first.shape == second.shape == (3, 32, 32)
    assert not torch.equal(first, second)


@pytest.mark.parametrize(
    ("width", "height"),
    [(640, 480), (480, 640), (300, 300), (32, 32), (33, 97), (20, 14), (1001, 57)],
)
def test_eval_transform_equals_torchvisions_to_the_bit(width: int, height: int) -> None:
    from torchvision import transforms

    config = tiny_model_config(image_size=32, image_mean=(0.5, 0.4, 0.3), image_std=(0.2, 0.25, 0.3))
    rng = np.random.default_rng(width * height)
    noise = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    photo = load_image(encode_image(noise, "JPEG"))  # real JPEG bytes, decoded as the service does
    reference = transforms.Compose(
        [
            transforms.Resize(32, antialias=True),
            transforms.CenterCrop(32),
            transforms.ToTensor(),
            transforms.Normalize(config.image_mean, config.image_std),
        ]
    )
    assert torch.equal(ImageTransform(config, train=False)(photo), reference(photo))


def test_serving_imports_no_torchvision() -> None:
    # torchvision imports torch._dynamo: seconds of start-up that serving does not need.
    code = (
        "import sys; import service.app, service.__main__, model.predictor, model.onnx_predictor; "
        "from model.images import ImageTransform; from fusion_testkit.factories import tiny_model_config; "
        "ImageTransform(tiny_model_config(), train=False); print('torchvision' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "False"
