import cv2
import numpy as np
import pytest

from config import load_config
from tools.data.preprocess import (
    IMAGE_EXTENSIONS,
    MIN_RESIZED_SIDE,
    ImageReadError,
    ImageSizeError,
    check_resizable,
    list_images,
    pad_batch,
    preprocess,
    preprocess_style,
    read_image,
    resize_scale,
)
from tools.errors import MissingInputError

MEAN, STD = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)


def test_long_side_rules_differ_where_the_references_differ():
    # 600 x 999 at 512/852: 512/600 * 999 = 852.48 rounds to 852, which PaddleDetection 0.5
    # accepts (it caps only when the rounded long side exceeds 852) while mmcv and
    # PaddleDetection 2.x take min(512/600, 852/999).
    assert resize_scale(600, 999, 512, 852, "ppdet_static") == 512 / 600
    assert resize_scale(600, 999, 512, 852, "ppdet2") == 852 / 999
    assert resize_scale(600, 999, 512, 852, "mmcv") == 852 / 999
    # Clearly too long: everyone caps.
    assert resize_scale(400, 1000, 512, 852, "ppdet_static") == 852 / 1000


def test_output_sizes_and_crops_per_style():
    image = np.zeros((600, 999, 3), np.uint8)
    chw, crop, ori = preprocess(image, (512, 852), MEAN, STD, "mmcv")
    # int(x * s + 0.5) for both sides; the crop is the resized size.
    assert chw.shape == (3, int(600 * 852 / 999 + 0.5), int(999 * 852 / 999 + 0.5)) == (3, 512, 852)
    assert crop == (512, 852) and ori == (600, 999)
    chw, crop, _ = preprocess(image, (512, 852), MEAN, STD, "ppdet_static")
    assert chw.shape == (3, 512, 852) and crop == (512, 852)
    # 2.x: cv2 rounds 511.7 up to 512 rows, but the head crops int(511.7) = 511.
    chw, crop, _ = preprocess(image, (512, 852), MEAN, STD, "ppdet2")
    assert chw.shape == (3, 512, 852) and crop == (511, 852)


def test_mmcv_rounds_half_up_where_cv2_would_not():
    # 3 x 5 pixels scaled by 1.5: 4.5 -> 5 rows with mmcv's int(x + 0.5).
    image = np.zeros((3, 5, 3), np.uint8)
    chw, _, _ = preprocess(image, (4.5, 100), MEAN, STD, "mmcv")
    assert chw.shape[1:] == (5, 8)


@pytest.mark.parametrize("style", ["mmcv", "ppdet_static", "ppdet2"])
def test_normalisation_without_resize(style):
    rng = np.random.RandomState(0)
    image = rng.randint(0, 256, (32, 48, 3)).astype(np.uint8)
    chw, crop, ori = preprocess(image, (32, 48), MEAN, STD, style)
    expected = ((image.astype(np.float64) - MEAN) / STD).transpose(2, 0, 1)
    np.testing.assert_allclose(chw, expected, atol=2e-5)
    assert chw.dtype == np.float32 and crop == ori == (32, 48)


def test_paddle2_resizes_floats_the_others_resize_uint8():
    # A half-grey, half-white image upsampled 1.5x: resizing uint8 rounds the blended edge
    # pixels to integers before normalising; resizing normalised floats does not.
    image = np.zeros((8, 8, 3), np.uint8)
    image[:, :4] = 100
    image[:, 4:] = 201
    static, _, _ = preprocess(image, (12, 100), MEAN, STD, "ppdet_static")
    paddle2, _, _ = preprocess(image, (12, 100), MEAN, STD, "ppdet2")
    pixels_static = static[0] * STD[0] + MEAN[0]
    pixels_paddle2 = paddle2[0] * STD[0] + MEAN[0]
    np.testing.assert_allclose(pixels_static, np.round(pixels_static), atol=1e-3)
    assert np.abs(pixels_paddle2 - np.round(pixels_paddle2)).max() > 0.1


def test_pad_batch_pads_bottom_right_to_multiples_of_32():
    a, b = np.ones((3, 40, 50), np.float32), np.full((3, 33, 70), 2, np.float32)
    batch = pad_batch([a, b])
    assert batch.shape == (2, 3, 64, 96)
    assert (batch[0, :, :40, :50] == 1).all() and batch[0, :, 40:].sum() == 0
    assert batch[0, :, :, 50:].sum() == 0 and (batch[1, :, :33, :70] == 2).all()


def test_read_image_formats(tmp_path):
    gray = np.arange(64, dtype=np.uint8).reshape(8, 8)
    cv2.imwrite(str(tmp_path / "gray.png"), gray)
    rgb = read_image(str(tmp_path / "gray.png"))
    assert rgb.shape == (8, 8, 3) and (rgb[..., 0] == gray).all() and (rgb[..., 2] == gray).all()

    bgra = np.zeros((4, 5, 4), np.uint8)
    bgra[..., 0], bgra[..., 2], bgra[..., 3] = 10, 200, 0  # fully transparent, colour kept
    cv2.imwrite(str(tmp_path / "rgba.png"), bgra)
    rgb = read_image(str(tmp_path / "rgba.png"))
    assert rgb.shape == (4, 5, 3) and (rgb[..., 0] == 200).all() and (rgb[..., 2] == 10).all()

    deep = np.full((4, 4, 3), 65535, np.uint16)
    cv2.imwrite(str(tmp_path / "deep.png"), deep)
    assert read_image(str(tmp_path / "deep.png")).dtype == np.uint8


@pytest.mark.parametrize("content, message", [
    (b"", "empty file"),
    (b"this is not an image", "not a decodable image"),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "not a decodable image"),  # truncated PNG
])
def test_unreadable_files(tmp_path, content, message):
    path = tmp_path / "bad.png"
    path.write_bytes(content)
    with pytest.raises(ImageReadError, match=message):
        read_image(str(path))


def test_missing_file(tmp_path):
    with pytest.raises(ImageReadError, match="cannot read"):
        read_image(str(tmp_path / "nope.jpg"))


def test_list_images(tmp_path):
    for name in ("b.jpg", "a.PNG", "notes.txt", ".hidden.jpg"):
        (tmp_path / name).write_bytes(b"x")
    assert [p.split("/")[-1] for p in list_images(str(tmp_path))] == ["a.PNG", "b.jpg"]
    assert list_images(str(tmp_path / "b.jpg")) == [str(tmp_path / "b.jpg")]
    assert len(list_images(str(tmp_path / "*.jpg"))) == 1
    with pytest.raises(FileNotFoundError):
        list_images(str(tmp_path / "*.gif"))


def test_preprocess_style_follows_the_weight_file_unless_set():
    cfg = load_config(0)
    assert preprocess_style(cfg, {"preprocess": "ppdet_static"}) == "ppdet_static"
    assert preprocess_style(cfg, {}) == "mmcv"
    cfg.preprocess = "ppdet2"
    assert preprocess_style(cfg, {"preprocess": "mmcv"}) == "ppdet2"


@pytest.mark.parametrize("style", ["mmcv", "ppdet_static", "ppdet2"])
@pytest.mark.parametrize("shape", [(10, 20000), (20000, 10), (1, 5000)])
def test_an_image_too_elongated_to_resize_is_an_image_read_error(style, shape):
    # cv2.resize used to fail an assertion here (a side resized to 0 px), which ended a
    # whole demo, eval or training run; now it is an ImageReadError, which they skip.
    image = np.zeros(shape + (3,), np.uint8)
    with pytest.raises(ImageSizeError, match="x.jpg: .* too elongated") as caught:
        preprocess(image, (512, 852), MEAN, STD, style, source="x.jpg")
    assert isinstance(caught.value, ImageReadError)
    assert f"at least {MIN_RESIZED_SIDE} px" in str(caught.value)


@pytest.mark.parametrize("style", ["mmcv", "ppdet_static", "ppdet2"])
def test_the_elongation_limit_is_the_cap_over_the_minimum_side(style):
    # At 512 / 852 the long side may be up to 852 / MIN_RESIZED_SIDE times the short one.
    short_side = 10
    longest = int(852 / MIN_RESIZED_SIDE * short_side)
    chw, crop, _ = preprocess(np.zeros((short_side, longest, 3), np.uint8), (512, 852), MEAN,
                              STD, style)
    assert min(chw.shape[1:]) >= MIN_RESIZED_SIDE - 1 and min(crop) >= MIN_RESIZED_SIDE - 1
    with pytest.raises(ImageSizeError):
        check_resizable(short_side, longest + 5, (512, 852), style)
    check_resizable(1, 1, (512, 852), style)  # tiny but square: scaled up, fine


def test_empty_folders_and_globs_say_what_is_missing(tmp_path):
    with pytest.raises(MissingInputError, match="holds no images") as caught:
        list_images(str(tmp_path))
    assert all(ext in str(caught.value) for ext in IMAGE_EXTENSIONS)
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(MissingInputError, match=f"the folder {tmp_path} holds no images"):
        list_images(str(tmp_path))
    with pytest.raises(MissingInputError, match="no images match .*: the pattern matches no"):
        list_images(str(tmp_path / "*.jpg"))
    with pytest.raises(MissingInputError, match="photo.jpg does not exist"):
        list_images(str(tmp_path / "photo.jpg"))
