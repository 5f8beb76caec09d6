import gzip
import socket
import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms

from tlutils import few_shot_subset
from tlutils.photos import (FASHION_MNIST_CLASSES, FASHION_MNIST_DIR, load_fashion_mnist,
                            load_image_folder, sample_photos)

# --- load_image_folder ---------------------------------------------------------------------------


def write_image(path, color, size=(5, 7), mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color).save(path)


@pytest.fixture
def image_folder(tmp_path):
    write_image(tmp_path / "ants" / "a1.png", (255, 0, 0))
    write_image(tmp_path / "ants" / "a2.PNG", (255, 0, 0), size=(9, 3))
    write_image(tmp_path / "bees" / "b1.png", (0, 0, 255))
    write_image(tmp_path / "bees" / "nested" / "b2.png", (0, 0, 255))
    write_image(tmp_path / "bees" / "b3.jpg", (0, 0, 255))
    return tmp_path


def test_load_image_folder_loads_images_labels_classes_and_files(image_folder):
    dataset = load_image_folder(image_folder, size=8)
    x, y = dataset.tensors
    assert dataset.classes == ["ants", "bees"]
    assert dataset.files == [image_folder / f for f in
                             ("ants/a1.png", "ants/a2.PNG", "bees/b1.png", "bees/b3.jpg",
                              "bees/nested/b2.png")]
    assert x.shape == (5, 3, 8, 8) and x.dtype == torch.float32
    assert y.tolist() == [0, 0, 1, 1, 1] and y.dtype == torch.int64
    torch.testing.assert_close(x[:2], torch.tensor([1.0, 0, 0]).view(1, 3, 1, 1).expand(2, 3, 8, 8))
    blue = torch.tensor([0, 0, 1.0]).view(1, 3, 1, 1).expand(3, 3, 8, 8)
    torch.testing.assert_close(x[2:], blue, atol=2 / 255, rtol=0)   # JPEG may shift a level


def test_load_image_folder_grayscale_has_one_channel(image_folder):
    x, y = load_image_folder(image_folder, size=6, grayscale=True).tensors
    assert x.shape == (5, 1, 6, 6)
    assert x.min() >= 0 and x.max() <= 1


def test_load_image_folder_default_transform_squashes_to_size_bilinear(tmp_path):
    image = Image.fromarray(np.arange(12 * 20 * 3, dtype=np.uint8).reshape(12, 20, 3) % 251)
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    image.save(tmp_path / "a" / "x.png")
    image.save(tmp_path / "b" / "x.png")
    x = load_image_folder(tmp_path, size=10).tensors[0]
    expected = torch.from_numpy(np.array(image.resize((10, 10), Image.BILINEAR))).permute(2, 0, 1)
    assert torch.equal(x[0], expected.float() / 255.0)


def test_load_image_folder_transform_gives_one_shape_for_grey_colour_and_any_aspect(tmp_path):
    write_image(tmp_path / "cats" / "wide.jpg", (200, 100, 50), size=(300, 40))
    write_image(tmp_path / "cats" / "tall.png", (10, 20, 30), size=(17, 250))
    write_image(tmp_path / "dogs" / "grey.png", 128, size=(64, 64), mode="L")
    write_image(tmp_path / "dogs" / "tiny.bmp", (0, 255, 0), size=(3, 2))
    write_image(tmp_path / "dogs" / "alpha.png", (0, 0, 0, 0), size=(40, 30), mode="RGBA")
    preprocess = transforms.Compose([transforms.Resize(24), transforms.CenterCrop(24), transforms.ToTensor(),
                                     transforms.Normalize([0.5] * 3, [0.25] * 3)])
    dataset = load_image_folder(tmp_path, transform=preprocess)
    x, y = dataset.tensors
    assert x.shape == (5, 3, 24, 24) and y.tolist() == [0, 0, 1, 1, 1]
    grey = x[dataset.files.index(tmp_path / "dogs" / "grey.png")]
    torch.testing.assert_close(grey, torch.full((3, 24, 24), (128 / 255 - 0.5) / 0.25))


def test_load_image_folder_grayscale_converts_to_L_before_the_transform(tmp_path):
    write_image(tmp_path / "a" / "red.png", (255, 0, 0))
    write_image(tmp_path / "b" / "grey.png", 77, mode="L")
    seen = []

    def record_mode(image):
        seen.append(image.mode)
        return transforms.functional.pil_to_tensor(image.resize((4, 4)))

    x = load_image_folder(tmp_path, transform=record_mode, grayscale=True).tensors[0]
    assert seen == ["L", "L"] and x.shape == (2, 1, 4, 4) and x.dtype == torch.uint8
    assert x[1].unique().tolist() == [77]


def test_load_image_folder_decodes_and_transforms_each_image_exactly_once(image_folder):
    calls = []

    def count(image):
        calls.append(image.size)
        return torch.zeros(2)

    dataset = load_image_folder(image_folder, transform=count)
    assert len(calls) == 5 and dataset.tensors[0].shape == (5, 2)


def test_load_image_folder_rejects_a_transform_with_varying_shapes(tmp_path):
    write_image(tmp_path / "a" / "square.png", (1, 2, 3), size=(30, 30))
    write_image(tmp_path / "b" / "wide.png", (1, 2, 3), size=(60, 30))
    with pytest.raises(ValueError, match=r"shape \(3, 20, 40\) for .*wide.png.*one fixed shape"):
        load_image_folder(tmp_path, transform=transforms.Compose([transforms.Resize(20),
                                                                 transforms.ToTensor()]))


def test_load_image_folder_rejects_a_transform_that_returns_no_tensor(image_folder):
    with pytest.raises(ValueError, match="must return a tensor, returned Image"):
        load_image_folder(image_folder, transform=lambda image: image)


def test_load_image_folder_skips_stray_files_with_a_warning_listing_them(image_folder):
    (image_folder / "ants" / "notes.txt").write_text("not an image")
    write_image(image_folder / "ants" / "placeholder.gif", (0, 0, 0))
    (image_folder / "bees" / ".DS_Store").write_bytes(b"\0")
    (image_folder / "bees" / "Thumbs.db").write_bytes(b"\0")
    with pytest.warns(UserWarning, match="skipped 4 files") as record:
        dataset = load_image_folder(image_folder, size=8)
    message = str(record[0].message)
    for name in ("ants/notes.txt", "ants/placeholder.gif", "bees/.DS_Store", "bees/Thumbs.db"):
        assert name in message
    assert len(dataset) == 5 and dataset.tensors[1].tolist() == [0, 0, 1, 1, 1]


def test_load_image_folder_ignores_hidden_class_folders(image_folder):
    write_image(image_folder / ".ipynb_checkpoints" / "x.png", (1, 2, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_image_folder(image_folder, size=4).classes == ["ants", "bees"]


def test_load_image_folder_names_a_jpg_that_does_not_decode(image_folder):
    (image_folder / "bees" / "broken.jpg").write_bytes(b"this is not a JPEG")
    with pytest.raises(ValueError, match=r"bees/broken\.jpg has an image extension but does not decode"):
        load_image_folder(image_folder)


def test_load_image_folder_names_a_truncated_jpg(image_folder):
    good = image_folder / "bees" / "b3.jpg"
    write_image(good, (0, 0, 255), size=(64, 64))
    (image_folder / "bees" / "cut.jpg").write_bytes(good.read_bytes()[:200])
    with pytest.raises(ValueError, match=r"cut\.jpg has an image extension but does not decode"):
        load_image_folder(image_folder)


def test_load_image_folder_reads_a_split_of_the_tutorial_layout(tmp_path):
    for split, n in (("train", 2), ("val", 1)):
        for label, cls in enumerate(("ants", "bees")):
            for i in range(n):
                write_image(tmp_path / split / cls / f"{i}.jpg", (label * 255, 0, 0))
    train = load_image_folder(tmp_path, "train", size=4)
    val = load_image_folder(tmp_path, split="val", size=4)
    assert train.classes == val.classes == ["ants", "bees"]
    assert train.tensors[1].tolist() == [0, 0, 1, 1] and val.tensors[1].tolist() == [0, 1]
    assert all(f.parts[-3] == "val" for f in val.files)


def test_load_image_folder_asks_for_split_when_root_holds_splits(tmp_path):
    write_image(tmp_path / "train" / "ants" / "a.png", (1, 2, 3))
    write_image(tmp_path / "val" / "ants" / "a.png", (1, 2, 3))
    with pytest.raises(ValueError, match=r"holds splits \['train', 'val'\], not classes: pass split="):
        load_image_folder(tmp_path)


def test_load_image_folder_names_the_splits_when_split_is_missing(image_folder):
    with pytest.raises(ValueError, match=r"no split 'train': its subfolders are \['ants', 'bees'\]"):
        load_image_folder(image_folder, split="train")


def test_load_image_folder_missing_folder(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_image_folder(tmp_path / "nope")


def test_load_image_folder_empty_folder(tmp_path):
    with pytest.raises(ValueError, match="at least two class subfolders"):
        load_image_folder(tmp_path)


def test_load_image_folder_one_class(tmp_path):
    write_image(tmp_path / "ants" / "a.png", (1, 2, 3))
    with pytest.raises(ValueError, match=r"at least two class subfolders, found \['ants'\]"):
        load_image_folder(tmp_path)


def test_load_image_folder_class_without_images(image_folder):
    (image_folder / "cats").mkdir()
    with pytest.raises(ValueError, match=r"classes with no images: \['cats'\]"):
        load_image_folder(image_folder)


def test_load_image_folder_class_with_only_stray_files_is_empty(image_folder):
    (image_folder / "cats").mkdir()
    (image_folder / "cats" / "readme.txt").write_text("photos to come")
    with pytest.warns(UserWarning, match="cats/readme.txt"), \
            pytest.raises(ValueError, match=r"classes with no images: \['cats'\]"):
        load_image_folder(image_folder)


# --- load_fashion_mnist --------------------------------------------------------------------------

def write_idx(path, array: np.ndarray, magic: int | None = None):
    """An idx file of unsigned bytes, gzipped, as Zalando and Debian ship them."""
    magic = 0x0800 | array.ndim if magic is None else magic
    header = magic.to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def tiny_fashion(tmp_path):
    """Three training and two test images of 28x28 with known pixels and labels."""
    rng = np.random.default_rng(0)
    arrays = {"train": (rng.integers(0, 256, (3, 28, 28)), np.array([9, 0, 4])),
              "t10k": (rng.integers(0, 256, (2, 28, 28)), np.array([1, 9]))}
    for prefix, (images, labels) in arrays.items():
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return tmp_path, arrays


def test_load_fashion_mnist_reads_idx_files_exactly(tiny_fashion):
    root, arrays = tiny_fashion
    for dataset, (images, labels) in zip(load_fashion_mnist(root), arrays.values()):
        x, y = dataset.tensors
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        assert x.shape == (len(labels), 1, 28, 28)
        assert torch.equal(x, torch.from_numpy(images).float().unsqueeze(1) / 255)
        assert y.tolist() == labels.tolist()
        assert dataset.classes == list(FASHION_MNIST_CLASSES)


def test_load_fashion_mnist_returns_fresh_tensors_each_call(tiny_fashion):
    root, _ = tiny_fashion
    first = load_fashion_mnist(root)[0].tensors[0]
    first.zero_()
    assert load_fashion_mnist(root)[0].tensors[0].sum() > 0


def test_load_fashion_mnist_missing_folder_says_how_to_install(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"sudo apt-get install dataset-fashion-mnist.*root="):
        load_fashion_mnist(tmp_path / "nowhere")


def test_load_fashion_mnist_names_the_missing_file(tiny_fashion):
    root, _ = tiny_fashion
    (root / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match=r"missing t10k-labels-idx1-ubyte\.gz\)"):
        load_fashion_mnist(root)


def test_load_fashion_mnist_rejects_a_wrong_magic_number(tiny_fashion):
    root, arrays = tiny_fashion
    write_idx(root / "train-labels-idx1-ubyte.gz", arrays["train"][1], magic=0x0803)
    with pytest.raises(ValueError, match=r"train-labels-idx1-ubyte\.gz is corrupt.*0x00000801, this one "
                                         r"with 0x00000803"):
        load_fashion_mnist(root)


def test_load_fashion_mnist_rejects_a_truncated_file(tiny_fashion):
    root, _ = tiny_fashion
    path = root / "t10k-images-idx3-ubyte.gz"
    data = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(data[:-5]))
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte\.gz is corrupt.*\(2, 28, 28\)"):
        load_fashion_mnist(root)


def test_load_fashion_mnist_rejects_a_file_that_is_not_gzip(tiny_fashion):
    root, _ = tiny_fashion
    (root / "train-images-idx3-ubyte.gz").write_bytes(b"<html>404</html>")
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte\.gz is not a readable gzipped"):
        load_fashion_mnist(root)


def test_load_fashion_mnist_rejects_images_and_labels_of_different_counts(tiny_fashion):
    root, _ = tiny_fashion
    write_idx(root / "train-labels-idx1-ubyte.gz", np.array([1, 2]))
    with pytest.raises(ValueError, match="holds 3 images but .* holds 2 labels"):
        load_fashion_mnist(root)


def test_load_fashion_mnist_installed_data_has_the_official_splits():
    train, test = load_fashion_mnist()
    assert train.tensors[0].shape == (60_000, 1, 28, 28)
    assert test.tensors[0].shape == (10_000, 1, 28, 28)
    assert train.classes == test.classes == list(FASHION_MNIST_CLASSES)
    assert len(FASHION_MNIST_CLASSES) == 10 and FASHION_MNIST_CLASSES[0] == "T-shirt/top"
    assert torch.equal(torch.bincount(train.tensors[1]), torch.full((10,), 6_000))
    assert torch.equal(torch.bincount(test.tensors[1]), torch.full((10,), 1_000))
    assert train.tensors[0].min() == 0 and train.tensors[0].max() == 1


def test_load_fashion_mnist_few_shot_subset_is_class_balanced():
    train, _ = load_fashion_mnist(FASHION_MNIST_DIR)
    x, y = few_shot_subset(train, k=3, seed=0).tensors
    assert x.shape == (30, 1, 28, 28)
    assert torch.equal(torch.bincount(y), torch.full((10,), 3))


# --- sample_photos -------------------------------------------------------------------------------

def test_sample_photos_are_seven_sizeable_rgb_photos_loaded_without_network(monkeypatch):
    def no_network(*args):
        raise OSError("network used")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    photos = sample_photos()
    assert sorted(photos) == ["astronaut", "chelsea", "china", "coffee", "flower", "motorcycle",
                              "rocket"]
    for name, photo in photos.items():
        assert photo.mode == "RGB", name
        assert min(photo.size) >= 300, name
        assert np.asarray(photo).std() > 20, name   # a photo, not a flat placeholder
    assert photos["motorcycle"].size == (741, 500) and photos["chelsea"].size == (451, 300)
