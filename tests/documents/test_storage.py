"""File storage (issue 15): content-addressed by SHA-256, written atomically, capped while the
upload arrives without reading past the cap."""

from __future__ import annotations

import hashlib
import os

import pytest

from adapters.file_storage import LocalFileStore, MemoryFileStore
from services.document_files import DocumentTooLarge, capped, store_upload


@pytest.fixture(params=["local", "memory"])
def store(request, tmp_path):
    return LocalFileStore(tmp_path / "documents") if request.param == "local" else MemoryFileStore()


def test_a_file_is_kept_by_the_sha256_of_its_bytes_and_read_back(store):
    stored = store_upload(store=store, chunks=[b"hello ", b"", b"world"], max_bytes=100)
    assert stored.key == hashlib.sha256(b"hello world").hexdigest()
    assert stored.size == 11
    assert store.exists(stored.key)
    with store.open(stored.key) as stream:
        assert stream.read(5) == b"hello"
        stream.seek(0)
        assert stream.read() == b"hello world"


def test_the_same_bytes_twice_are_one_file_and_deleting_it_says_whether_it_was_there(store):
    first = store.put([b"same"])
    second = store.put([b"sa", b"me"])
    assert first.key == second.key
    assert store.delete(first.key) is True
    assert store.delete(first.key) is False
    assert not store.exists(first.key)
    with pytest.raises(FileNotFoundError):
        store.open(first.key)


@pytest.mark.parametrize("key", ["../../etc/passwd", "A" * 64, "0" * 63, "", "0" * 64 + "/x"])
def test_a_key_is_64_lowercase_hex_digits_so_it_names_no_other_path(store, key):
    for operation in (store.open, store.exists, store.delete):
        with pytest.raises(ValueError):
            operation(key)


def test_past_the_cap_the_upload_is_refused_without_reading_further_and_nothing_is_kept(store, tmp_path):
    read = []

    def chunks():
        for number in range(1000):
            read.append(number)
            yield b"x" * 10

    with pytest.raises(DocumentTooLarge) as refused:
        store_upload(store=store, chunks=chunks(), max_bytes=25)
    assert read == [0, 1, 2]  # the third chunk crossed 25 bytes: nothing after it was read
    assert refused.value.max_bytes == 25
    assert refused.value.problem.status == 413
    if isinstance(store, LocalFileStore):
        assert list((tmp_path / "documents").rglob("*")) == [tmp_path / "documents" / ".incoming"]
    else:
        assert store.files == {}


def test_exactly_the_cap_is_accepted():
    assert b"".join(capped([b"ab", b"cd"], max_bytes=4)) == b"abcd"


def test_the_local_store_writes_atomically_into_a_fanned_out_path(tmp_path):
    store = LocalFileStore(tmp_path / "documents")
    stored = store.put(iter([b"a" * 100_000, b"b" * 100_000]))
    path = store.path(stored.key)
    assert path == tmp_path / "documents" / stored.key[:2] / stored.key[2:4] / stored.key
    assert path.read_bytes() == b"a" * 100_000 + b"b" * 100_000
    assert oct(path.stat().st_mode & 0o777) == oct(0o600)
    assert list((tmp_path / "documents" / ".incoming").iterdir()) == []


def test_a_writer_that_died_leaves_a_temporary_file_the_sweep_removes(tmp_path):
    store = LocalFileStore(tmp_path / "documents")
    leftover = tmp_path / "documents" / ".incoming" / "upload-dead"
    leftover.write_bytes(b"partial")
    os.utime(leftover, (0, 0))
    fresh = tmp_path / "documents" / ".incoming" / "upload-writing"
    fresh.write_bytes(b"partial")
    assert store.sweep_incoming(older_than_seconds=60) == 1
    assert not leftover.exists() and fresh.exists()
