"""The downloader against a local HTTP server on 127.0.0.1 (Range support, checksums,
progress bar, timeouts), archive extraction, and the CORe50 / Tiny ImageNet download
paths end to end on tiny archives. Nothing leaves this machine."""
from __future__ import annotations

import hashlib
import io
import socket
import tarfile
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from clutils.data import core50, tinyimagenet
from clutils.data.datasets import load_dataset
from clutils.data.download import ChecksumError, DownloadError, download_file, extract_archive

PAYLOAD = bytes(range(256)) * 1200  # 300 KiB


# ------------------------------------------------------------ a local server


class Server:
    """Files served from memory by a thread; honours 'Range: bytes=N-' unless told not to."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str | None]] = []  # (path, Range header)
        self.sent: list[int] = []  # body bytes sent per request
        self.honour_range = True
        self.cut_after: int | None = None  # announce the full length but stop early
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                wanted = self.headers.get("Range")
                server.requests.append((self.path, wanted))
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                start = 0
                if wanted and server.honour_range:
                    start = int(wanted.removeprefix("bytes=").split("-")[0])
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                chunk = body[start:]
                self.send_header("Content-Length", str(len(chunk)))
                self.end_headers()
                if server.cut_after is not None:
                    chunk = chunk[: server.cut_after]
                self.wfile.write(chunk)
                server.sent.append(len(chunk))

            def log_message(self, *args):  # keep test output quiet
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_port}{path}"


@pytest.fixture
def server():
    s = Server()
    s.thread.start()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ------------------------------------------------------------- download_file


def test_download_with_checksum(server, tmp_path):
    server.files["/f.bin"] = PAYLOAD
    dest = download_file(server.url("/f.bin"), tmp_path / "sub" / "f.bin", sha256=sha256(PAYLOAD), progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert not (tmp_path / "sub" / "f.bin.part").exists()


def test_md5_checksum_is_accepted(server, tmp_path):
    server.files["/f.bin"] = PAYLOAD
    md5 = hashlib.md5(PAYLOAD).hexdigest()
    assert download_file(server.url("/f.bin"), tmp_path / "f.bin", md5=md5, progress=False).read_bytes() == PAYLOAD


def test_resume_a_partial_download(server, tmp_path):
    server.files["/f.bin"] = PAYLOAD
    half = len(PAYLOAD) // 2
    (tmp_path / "f.bin.part").write_bytes(PAYLOAD[:half])
    dest = download_file(server.url("/f.bin"), tmp_path / "f.bin", sha256=sha256(PAYLOAD), progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert server.requests == [("/f.bin", f"bytes={half}-")]
    assert server.sent == [len(PAYLOAD) - half]  # only the missing half travelled


def test_resume_when_the_server_ignores_range(server, tmp_path):
    server.files["/f.bin"] = PAYLOAD
    server.honour_range = False
    (tmp_path / "f.bin.part").write_bytes(b"stale bytes")
    dest = download_file(server.url("/f.bin"), tmp_path / "f.bin", sha256=sha256(PAYLOAD), progress=False)
    assert dest.read_bytes() == PAYLOAD


def test_a_complete_part_file_is_finished_without_a_body(server, tmp_path):
    server.files["/f.bin"] = PAYLOAD
    (tmp_path / "f.bin.part").write_bytes(PAYLOAD)
    dest = download_file(server.url("/f.bin"), tmp_path / "f.bin", sha256=sha256(PAYLOAD), progress=False)
    assert dest.read_bytes() == PAYLOAD and server.sent == []


def test_checksum_mismatch_deletes_and_raises(server, tmp_path):
    server.files["/f.bin"] = PAYLOAD
    with pytest.raises(ChecksumError) as info:
        download_file(server.url("/f.bin"), tmp_path / "f.bin", sha256="0" * 64, progress=False)
    message = str(info.value)
    assert "0" * 64 in message and sha256(PAYLOAD) in message and "/f.bin" in message
    assert not (tmp_path / "f.bin").exists() and not (tmp_path / "f.bin.part").exists()


def test_an_existing_good_file_is_not_downloaded_again(server, tmp_path):
    (tmp_path / "f.bin").write_bytes(PAYLOAD)
    download_file(server.url("/f.bin"), tmp_path / "f.bin", sha256=sha256(PAYLOAD), progress=False)
    assert server.requests == []


def test_an_interrupted_transfer_keeps_the_part_for_resuming(server, tmp_path):
    server.files["/f.bin"] = PAYLOAD
    server.cut_after = 1000
    with pytest.raises(DownloadError):
        download_file(server.url("/f.bin"), tmp_path / "f.bin", progress=False)
    assert (tmp_path / "f.bin.part").stat().st_size == 1000
    server.cut_after = None
    assert download_file(server.url("/f.bin"), tmp_path / "f.bin", progress=False).read_bytes() == PAYLOAD
    assert server.requests[-1][1] == "bytes=1000-"


def test_progress_bar_on_and_off(server, tmp_path, capfd):
    server.files["/f.bin"] = PAYLOAD
    download_file(server.url("/f.bin"), tmp_path / "quiet.bin", progress=False)
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    download_file(server.url("/f.bin"), tmp_path / "loud.bin", progress=True)
    out, err = capfd.readouterr()
    assert "loud.bin" in err and "100%" in err


def test_http_errors_name_the_url(server, tmp_path):
    with pytest.raises(DownloadError, match="/missing.bin"):
        download_file(server.url("/missing.bin"), tmp_path / "x", progress=False)


def test_a_silent_server_times_out_instead_of_hanging(tmp_path):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)  # accepts connections (kernel backlog) but never answers
    try:
        start = time.perf_counter()
        with pytest.raises(DownloadError, match="timed out"):
            download_file(f"http://127.0.0.1:{listener.getsockname()[1]}/f", tmp_path / "f",
                          progress=False, timeout=0.5)
        assert time.perf_counter() - start < 5
    finally:
        listener.close()


# ----------------------------------------------------------- extract_archive


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def test_extract_zip_tar_and_gzip(tmp_path):
    (tmp_path / "a.zip").write_bytes(zip_bytes({"top/x.txt": b"zip"}))
    extract_archive(tmp_path / "a.zip", tmp_path / "out")
    assert (tmp_path / "out" / "top" / "x.txt").read_bytes() == b"zip"

    (tmp_path / "y.txt").write_bytes(b"tar")
    with tarfile.open(tmp_path / "b.tar.gz", "w:gz") as tf:
        tf.add(tmp_path / "y.txt", arcname="inner/y.txt")
    extract_archive(tmp_path / "b.tar.gz", tmp_path / "out", remove=True)
    assert (tmp_path / "out" / "inner" / "y.txt").read_bytes() == b"tar"
    assert not (tmp_path / "b.tar.gz").exists()

    import gzip

    (tmp_path / "c.bin.gz").write_bytes(gzip.compress(b"gz"))
    extract_archive(tmp_path / "c.bin.gz")
    assert (tmp_path / "c.bin").read_bytes() == b"gz"


def test_extract_refuses_members_outside_the_destination(tmp_path):
    (tmp_path / "evil.zip").write_bytes(zip_bytes({"../escaped.txt": b"no"}))
    with pytest.raises(ValueError, match="outside"):
        extract_archive(tmp_path / "evil.zip", tmp_path / "out")
    assert not (tmp_path / "escaped.txt").exists()


# -------------------------------------------- dataset downloads, end to end


def png_bytes(colour) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def test_download_core50_then_load(server, tmp_path, monkeypatch):
    members = {f"core50_128x128/s{s}/o{o}/C_{s:02d}_{o:02d}_{f:03d}.png": png_bytes((o, s, f))
               for s in (1, 3) for o in (2, 12) for f in range(2)}
    files = {"core50_128x128.zip": zip_bytes(members), "paths.pkl": b"p", "LUP.pkl": b"l", "labels.pkl": b"y"}
    for name, data in files.items():
        server.files[f"/{name}"] = data
    monkeypatch.setattr(core50, "FILES", tuple(
        (name, server.url(f"/{name}"), hashlib.md5(data).hexdigest()) for name, data in files.items()))

    folder = core50.download_core50(tmp_path, progress=False)
    assert (folder / "core50_128x128" / "s3" / "o12" / "C_03_12_001.png").is_file()
    assert not (folder / "core50_128x128.zip").exists()  # removed once unpacked
    data = load_dataset("core50", root=tmp_path, size=None)  # download=None: present, no refetch
    assert (len(data.train), len(data.test)) == (4, 4) and data.input_shape == (3, 8, 8)
    assert sorted(data.train.y.unique().tolist()) == [0, 2]

    requests = len(server.requests)
    core50.download_core50(tmp_path, progress=False)  # everything present: no new transfer
    assert len(server.requests) == requests

    (folder / core50.UNPACKING).touch()  # as if unpacking had been interrupted
    load_dataset("core50", root=tmp_path, size=None)
    assert not (folder / core50.UNPACKING).exists()
    assert server.requests[-1][0] == "/core50_128x128.zip"  # fetched and unpacked again


def test_download_core50_with_a_wrong_checksum_is_an_unavailable_dataset(server, tmp_path, monkeypatch):
    server.files["/core50_128x128.zip"] = zip_bytes({"core50_128x128/readme": b"x"})
    monkeypatch.setattr(core50, "FILES", (("core50_128x128.zip", server.url("/core50_128x128.zip"), "0" * 32),))
    from clutils.data.datasets import DatasetUnavailableError

    with pytest.raises(DatasetUnavailableError) as info:
        load_dataset("core50", root=tmp_path)
    assert isinstance(info.value.__cause__, ChecksumError) and "md5" in str(info.value)


def test_download_tiny_imagenet_then_load(server, tmp_path, monkeypatch):
    from PIL import Image

    def jpeg(colour) -> bytes:
        buffer = io.BytesIO()
        Image.new("RGB", (64, 64), colour).save(buffer, format="JPEG")
        return buffer.getvalue()

    top = "tiny-imagenet-200/"
    members = {top + "wnids.txt": b"n1\nn2\n"}
    for c, wnid in enumerate(["n1", "n2"]):
        for i in range(3):
            members[f"{top}train/{wnid}/images/{wnid}_{i}.JPEG"] = jpeg((100 * c, i, 0))
        members[f"{top}val/images/val_{c}.JPEG"] = jpeg((100 * c, 50, 50))
    members[top + "val/val_annotations.txt"] = b"val_0.JPEG\tn1\t0\t0\t1\t1\nval_1.JPEG\tn2\t0\t0\t1\t1\n"
    archive = zip_bytes(members)
    server.files["/tiny.zip"] = archive
    monkeypatch.setattr(tinyimagenet, "URL", server.url("/tiny.zip"))
    monkeypatch.setattr(tinyimagenet, "MD5", hashlib.md5(archive).hexdigest())

    data = load_dataset("tiny-imagenet", root=tmp_path)  # absent: downloaded, unpacked, loaded
    assert (len(data.train), len(data.test), data.n_classes) == (6, 2, 2)
    assert data.input_shape == (3, 64, 64) and data.test.y.tolist() == [0, 1]
    assert not (tmp_path / "tiny-imagenet-200.zip").exists()
