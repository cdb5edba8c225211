"""The SPP paper's natural-image datasets (clutils.data.natural) on small fake files the tests write in the
real formats: SVHN's .mat, STL-10's binary, Caltech-101's and notMNIST's folders of images. No network."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from clutils.data import natural
from clutils.data.datasets import DatasetUnavailableError, dataset_names, load_dataset
from clutils.data.download import DownloadError, file_hash
from clutils.data.errors import DataFileError


def _svhn_files(root, n=6):
    from scipy.io import savemat

    rng = np.random.default_rng(0)
    folder = root / natural.SVHN_FOLDER
    folder.mkdir(parents=True)
    arrays = {}
    for split, (_, name, _) in natural.SVHN_FILES.items():
        x = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
        y = np.array([[1 + i % 10] for i in range(n)], dtype=np.uint8)
        y[0, 0] = 10  # SVHN writes the digit 0 as 10
        savemat(str(folder / name), {"X": x, "y": y})
        arrays[split] = (x, y)
    return folder, arrays


def _trust_fake_svhn(monkeypatch, folder):
    monkeypatch.setattr(natural, "SVHN_FILES", {
        split: (url, name, file_hash(folder / name, "md5")) for split, (url, name, _) in natural.SVHN_FILES.items()})


def test_the_new_datasets_are_registered():
    assert {"svhn", "stl10", "caltech101", "notmnist"} <= set(dataset_names())


def test_svhn_mat_files_decode_to_channel_first_images_with_ten_as_zero(tmp_path, monkeypatch):
    folder, arrays = _svhn_files(tmp_path)
    x, y = natural.read_svhn_mat(folder / "train_32x32.mat")
    raw_x, raw_y = arrays["train"]
    assert x.shape == (6, 3, 32, 32) and x.dtype == torch.uint8
    assert torch.equal(x[2, 1], torch.from_numpy(raw_x[:, :, 1, 2]))
    assert y[0] == 0 and torch.equal(y[1:], torch.from_numpy(raw_y[1:, 0].astype(np.int64) % 10))
    _trust_fake_svhn(monkeypatch, folder)
    data = load_dataset("svhn", root=tmp_path, download=False)
    assert data.train.x.shape == (6, 3, 32, 32) and data.n_classes == 10


def test_svhn_refuses_files_whose_md5_is_not_the_original(tmp_path):
    _svhn_files(tmp_path)
    with pytest.raises(DataFileError, match="MD5"):
        load_dataset("svhn", root=tmp_path, download=False)


def test_offline_errors_say_where_to_get_the_data(tmp_path, monkeypatch):
    with pytest.raises(DatasetUnavailableError, match="ufldl.stanford.edu"):
        load_dataset("svhn", root=tmp_path, download=False)

    def offline(url, *args, **kwargs):
        raise DownloadError(f"could not download {url}: no network")

    monkeypatch.setattr(natural, "download_file", offline)
    for name, where in (("stl10", "stl10_binary.tar.gz"), ("caltech101", "caltech-101.zip"),
                        ("svhn", "train_32x32.mat")):
        with pytest.raises(DatasetUnavailableError, match="no network") as info:
            load_dataset(name, root=tmp_path)
        assert where in str(info.value) and "digits" in str(info.value)


def test_stl10_binary_is_read_column_major_and_resized(tmp_path, monkeypatch):
    folder = tmp_path / natural.STL10_FOLDER
    folder.mkdir()
    rng = np.random.default_rng(1)
    images = {s: rng.integers(0, 256, (n, 3, 96, 96), dtype=np.uint8) for s, n in (("train", 4), ("test", 3))}
    for split, x in images.items():
        x.transpose(0, 1, 3, 2).tofile(folder / f"{split}_X.bin")  # the file's column-major order
        np.arange(1, len(x) + 1, dtype=np.uint8).tofile(folder / f"{split}_y.bin")
    x = natural.read_stl10_images(folder / "train_X.bin")
    assert torch.equal(x, torch.from_numpy(images["train"]))
    assert natural.read_stl10_labels(folder / "test_y.bin").tolist() == [0, 1, 2]
    monkeypatch.setattr(natural, "STL10_FILES", {k: (name, file_hash(folder / name, "md5"))
                                                 for k, (name, _) in natural.STL10_FILES.items()})
    data = load_dataset("stl10", root=tmp_path, download=False)
    assert data.train.x.shape == (4, 3, 32, 32) and data.test.x.shape == (3, 3, 32, 32)
    (folder / "test_X.bin").write_bytes(b"\0" * 100)
    with pytest.raises(DataFileError):
        natural.read_stl10_images(folder / "test_X.bin")


def test_resize_keeps_a_flat_image_flat():
    x = torch.full((2, 3, 96, 96), 77, dtype=torch.uint8)
    assert torch.equal(natural.resize_uint8(x, 32), torch.full((2, 3, 32, 32), 77, dtype=torch.uint8))
    with pytest.raises(ValueError):
        natural.resize_uint8(x[0], 32)


def _image_folder(folder, classes, per_class, fmt, suffix):
    from PIL import Image

    for c, name in enumerate(classes):
        (folder / name).mkdir(parents=True)
        for i in range(per_class):
            size = (20 + i, 14 + c)  # sizes differ: the loader resizes them all
            Image.new("RGB", size, (10 * c, 5 * i, 200)).save(folder / name / f"image_{i:04d}{suffix}", fmt)


def test_caltech101_folders_become_classes_split_seven_to_three(tmp_path):
    classes = ["BACKGROUND_Google", "accordion", "airplanes"]
    _image_folder(tmp_path / natural.CALTECH_FOLDER, classes, 10, "JPEG", ".jpg")
    data = load_dataset("caltech101", root=tmp_path, download=False, size=16)
    assert data.n_classes == 3 and data.class_names == tuple(classes)
    assert data.train.x.shape == (21, 3, 16, 16) and data.test.x.shape == (9, 3, 16, 16)
    assert torch.bincount(data.test.y).tolist() == [3, 3, 3]


def test_notmnist_is_never_downloaded_and_skips_broken_files(tmp_path):
    with pytest.raises(DatasetUnavailableError, match="no stable public download"):
        load_dataset("notmnist", root=tmp_path)
    folder = tmp_path / natural.NOTMNIST_FOLDER
    _image_folder(folder, natural.NOTMNIST_LETTERS, 5, "PNG", ".png")
    (folder / "A" / "broken.png").write_bytes(b"")
    data = load_dataset("notmnist", root=tmp_path)
    assert data.train.x.shape == (40, 3, 32, 32) and data.test.x.shape == (10, 3, 32, 32)


@pytest.fixture
def served(tmp_path):
    """A folder served over HTTP on 127.0.0.1 (nothing leaves this machine)."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    folder = tmp_path / "served"
    folder.mkdir()

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    httpd.server_close()


def test_caltech101_download_unpacks_the_zip_then_its_tar_and_loads(served, tmp_path, monkeypatch):
    import tarfile
    import zipfile

    folder, url = served
    source = tmp_path / "build"
    _image_folder(source / natural.CALTECH_FOLDER, ["Faces", "ant"], 4, "JPEG", ".jpg")
    with tarfile.open(source / "101_ObjectCategories.tar.gz", "w:gz") as tar:
        tar.add(source / natural.CALTECH_FOLDER, arcname=natural.CALTECH_FOLDER)
    with zipfile.ZipFile(folder / "caltech-101.zip", "w") as zf:
        zf.write(source / "101_ObjectCategories.tar.gz", "caltech-101/101_ObjectCategories.tar.gz")
    root = tmp_path / "root"
    monkeypatch.setattr(natural, "CALTECH_URL", f"{url}/caltech-101.zip")
    monkeypatch.setattr(natural, "CALTECH_MD5", "0" * 32)
    with pytest.raises(DatasetUnavailableError, match="md5"):
        load_dataset("caltech101", root=root, size=8)
    monkeypatch.setattr(natural, "CALTECH_MD5", file_hash(folder / "caltech-101.zip", "md5"))
    data = load_dataset("caltech101", root=root, size=8)
    assert data.class_names == ("Faces", "ant") and (len(data.train), len(data.test)) == (2, 6)
    assert not (root / "caltech-101.zip").exists() and not (root / "caltech-101-zip").exists()
