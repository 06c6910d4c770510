import gzip
import hashlib
import lzma

import numpy as np
import pytest

from tasks.data import SHAKESPEARE_SHA256, DataError, find_shakespeare, read_codepoints
from tasks.text import ShakespeareTask, TextConfig, TextTask


def test_shakespeare_found_and_split_like_nanogpt(shakespeare):
    assert hashlib.sha256(shakespeare.read_bytes()).hexdigest() == SHAKESPEARE_SHA256
    task = ShakespeareTask(TextConfig(path=str(shakespeare)))
    text = shakespeare.read_text()
    assert len(task.vocab) == 65 and task.vocab.chars == "".join(sorted(set(text)))
    n = int(len(text) * 0.9)
    assert task.vocab.decode(task.split_data["train"][:50].tolist()) == text[:50]
    assert len(task.split_data["train"]) == n and len(task.split_data["val"]) == len(text) - n


def test_env_var_lookup(shakespeare, monkeypatch):
    monkeypatch.setenv("WORKBENCH_DATA_DIR", str(shakespeare.parent))
    assert find_shakespeare().resolve() == shakespeare.resolve()
    explicit = find_shakespeare(str(shakespeare))
    assert explicit == shakespeare


def test_offline_without_a_copy_fails_clearly(tmp_path, monkeypatch):
    monkeypatch.delenv("WORKBENCH_DATA_DIR", raising=False)
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path / "cache"))
    import tasks.data as data

    def no_network(*a, **k):
        raise OSError("network unreachable")

    monkeypatch.setattr(data.urllib.request, "urlopen", no_network)
    with pytest.raises(DataError, match="task.path"):
        find_shakespeare()


def test_windows_are_shifted_and_deterministic(tmp_path):
    p = tmp_path / "t.txt"
    p.write_text("abcdefghijklmnopqrstuvwxyz" * 20)
    task = TextTask(TextConfig(path=str(p)))
    x, y = task.batch(0, "train", 3, 0, 4, 8)
    assert x.shape == (4, 8) and np.array_equal(x[:, 1:], y[:, :-1])
    x2, _ = task.batch(0, "train", 3, 0, 4, 8)
    x3, _ = task.batch(1, "train", 3, 0, 4, 8)
    assert np.array_equal(x, x2) and not np.array_equal(x, x3)
    # val windows come from the last 10%
    xv, _ = task.batch(0, "val", 0, 0, 16, 8)
    val_chars = set(task.vocab.decode(task.split_data["val"].tolist()))
    assert set(task.vocab.decode(xv.ravel().tolist())) <= val_chars


@pytest.mark.parametrize("opener,suffix", [(gzip.open, ".gz"), (lzma.open, ".xz")])
def test_compressed_files_are_streamed(tmp_path, opener, suffix):
    text = "héllo wörld\n" * 1000
    p = tmp_path / f"c.txt{suffix}"
    with opener(p, "wt", encoding="utf-8") as f:
        f.write(text)
    cps = read_codepoints(p)
    assert "".join(map(chr, cps.tolist())) == text


def test_non_ascii_split_across_chunks(tmp_path, monkeypatch):
    import tasks.data as data

    monkeypatch.setattr(data, "CHUNK", 7)  # forces multi-byte characters across chunk borders
    text = "aé€😀b" * 50
    p = tmp_path / "u.txt"
    p.write_text(text, encoding="utf-8")
    assert "".join(map(chr, read_codepoints(p).tolist())) == text


@pytest.mark.parametrize("content,match", [(b"", "empty"), (b"caf\xe9 au lait", "UTF-8"), (b"ab\x00cd", "binary")])
def test_bad_files(tmp_path, content, match):
    p = tmp_path / "bad.txt"
    p.write_bytes(content)
    with pytest.raises(DataError, match=match):
        read_codepoints(p)
