"""File digests: memoised on disk for large files, never stale."""

import hashlib
import os
import time

from miniplm.store import hashing
from miniplm.store.hashing import PERSIST_MIN_BYTES, file_sha256


def _fresh_process(monkeypatch):
    monkeypatch.setattr(hashing, "_STAT_CACHE", {})


def test_a_large_files_digest_is_read_once_per_machine_and_never_stale(tmp_path, monkeypatch):
    monkeypatch.setenv("MINIPLM_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(hashing, "SETTLED_NS", -1)  # files written just now count as settled
    big = tmp_path / "weights.bin"
    body = os.urandom(PERSIST_MIN_BYTES + 17)
    big.write_bytes(body)
    assert file_sha256(big) == hashlib.sha256(body).hexdigest()
    (memo,) = (tmp_path / "cache" / "digests").iterdir()
    assert memo.read_text() == hashlib.sha256(body).hexdigest()

    # a later process takes the digest from the memo: one whose content is a different digest shows it was used
    _fresh_process(monkeypatch)
    memo.write_text("0" * 64)
    assert file_sha256(big) == "0" * 64

    # the same size rewritten, even with the old mtime put back: its ctime moved, so it is read again
    st = big.stat()
    time.sleep(0.05)  # past the tick of the coarse clock file times come from
    changed = bytes(reversed(body))
    big.write_bytes(changed)
    os.utime(big, ns=(st.st_atime_ns, st.st_mtime_ns))
    _fresh_process(monkeypatch)
    assert file_sha256(big) == hashlib.sha256(changed).hexdigest()


def test_a_damaged_memo_is_ignored_and_small_files_leave_none(tmp_path, monkeypatch):
    monkeypatch.setenv("MINIPLM_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(hashing, "SETTLED_NS", -1)
    big = tmp_path / "corpus.jsonl"
    big.write_bytes(b"x" * PERSIST_MIN_BYTES)
    want = hashlib.sha256(big.read_bytes()).hexdigest()
    file_sha256(big)
    (memo,) = (tmp_path / "cache" / "digests").iterdir()
    memo.write_text(want[:20])  # a torn or foreign file
    _fresh_process(monkeypatch)
    assert file_sha256(big) == want and memo.read_text() == want

    small = tmp_path / "config.json"
    small.write_text("{}")
    assert file_sha256(small) == hashlib.sha256(b"{}").hexdigest()
    assert len(list((tmp_path / "cache" / "digests").iterdir())) == 1


def test_a_file_changed_a_moment_ago_is_not_memoised(tmp_path, monkeypatch):
    """It could change again within the same clock tick, leaving its stat as it was: its digest is read afresh."""
    monkeypatch.setenv("MINIPLM_CACHE", str(tmp_path / "cache"))
    fresh = tmp_path / "weights.bin"
    fresh.write_bytes(b"z" * PERSIST_MIN_BYTES)
    assert file_sha256(fresh) == hashlib.sha256(fresh.read_bytes()).hexdigest()
    assert not (tmp_path / "cache" / "digests").exists()


def test_an_unwritable_cache_only_costs_the_speed_up(tmp_path, monkeypatch):
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the cache folder would be")
    monkeypatch.setenv("MINIPLM_CACHE", str(blocker))
    monkeypatch.setattr(hashing, "SETTLED_NS", -1)
    big = tmp_path / "weights.bin"
    big.write_bytes(b"y" * PERSIST_MIN_BYTES)
    assert file_sha256(big) == hashlib.sha256(big.read_bytes()).hexdigest()
