"""Finding, downloading and reading text corpora.

tiny Shakespeare is looked up in this order:
  1. an explicit path (--set task.path=FILE)
  2. $WORKBENCH_DATA_DIR/tinyshakespeare.txt
  3. the cache: $WORKBENCH_CACHE_DIR, else $XDG_CACHE_HOME/workbench, else ~/.cache/workbench
  4. a download from the char-rnn repository, checked against its sha256, then cached
"""

from __future__ import annotations

import bz2
import codecs
import gzip
import hashlib
import lzma
import os
import urllib.request
from pathlib import Path

import numpy as np

SHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
SHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
SHAKESPEARE_FILE = "tinyshakespeare.txt"
CHUNK = 1 << 23  # 8 MiB of compressed or plain bytes per read


class DataError(ValueError):
    """Data that cannot be found or read; the message says what to do."""


def cache_dir() -> Path:
    if os.environ.get("WORKBENCH_CACHE_DIR"):
        return Path(os.environ["WORKBENCH_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "workbench"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def find_shakespeare(path: str = "") -> Path:
    if path:
        p = Path(path).expanduser()
        if not p.is_file():
            raise DataError(f"data file not found: {p}")
        return p
    candidates = []
    if os.environ.get("WORKBENCH_DATA_DIR"):
        candidates.append(Path(os.environ["WORKBENCH_DATA_DIR"]) / SHAKESPEARE_FILE)
    candidates.append(cache_dir() / SHAKESPEARE_FILE)
    for p in candidates:
        if p.is_file():
            return p
    return download(SHAKESPEARE_URL, SHAKESPEARE_SHA256, cache_dir() / SHAKESPEARE_FILE)


def download(url: str, sha256: str, dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.part")
    try:
        with urllib.request.urlopen(url, timeout=30) as r, open(tmp, "wb") as f:
            for block in iter(lambda: r.read(CHUNK), b""):
                f.write(block)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise DataError(
            f"tiny Shakespeare is not available offline and the download failed ({e}); "
            f"pass a copy with --set task.path=FILE or set WORKBENCH_DATA_DIR to a folder holding {dest.name}"
        ) from None
    got = sha256_file(tmp)
    if got != sha256:
        tmp.unlink(missing_ok=True)
        raise DataError(f"download of {url} has sha256 {got}, expected {sha256}")
    os.replace(tmp, dest)
    return dest


def _open_binary(path: Path):
    name = path.name.lower()
    if name.endswith(".gz"):
        return gzip.open(path, "rb")
    if name.endswith(".xz") or name.endswith(".lzma"):
        return lzma.open(path, "rb")
    if name.endswith(".bz2"):
        return bz2.open(path, "rb")
    return open(path, "rb")


def read_codepoints(path: Path) -> np.ndarray:
    """The file's characters as one integer array, read as a stream.

    Compressed files (.gz, .xz, .bz2) are decompressed chunk by chunk; ASCII
    chunks stay one byte per character, so a 100 MB corpus costs ~100 MB.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    decoder = codecs.getincrementaldecoder("utf-8")()
    parts: list[np.ndarray] = []
    try:
        with _open_binary(path) as f:
            for block in iter(lambda: f.read(CHUNK), b""):
                raw = np.frombuffer(block, dtype=np.uint8)
                if decoder.getstate()[0] == b"" and not (raw & 0x80).any():
                    parts.append(raw.copy())  # pure ASCII: bytes are codepoints
                    continue
                text = decoder.decode(block)
                parts.append(np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).copy())
            tail = decoder.decode(b"", final=True)
    except UnicodeDecodeError as e:
        raise DataError(f"{path} is not UTF-8 text (byte {e.start} of a chunk: {e.reason})") from None
    except (OSError, EOFError, lzma.LZMAError) as e:
        raise DataError(f"cannot read {path}: {e}") from None
    if tail:
        parts.append(np.frombuffer(tail.encode("utf-32-le"), dtype=np.uint32).copy())
    if not parts or sum(len(p) for p in parts) == 0:
        raise DataError(f"data file is empty: {path}")
    dtype = np.uint8 if all(p.dtype == np.uint8 for p in parts) else np.uint32
    cps = np.concatenate([p.astype(dtype, copy=False) for p in parts])
    if (cps == 0).any():
        raise DataError(f"{path} looks binary (it contains NUL bytes), not text")
    return cps
