"""Fetching a MovieLens release from GroupLens into the cache, checksum-verified."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from tqdm import tqdm

from recplug.api import DataError

BASE_URL = "https://files.grouplens.org/datasets/movielens"
ARCHIVE_MD5 = {
    "ml-1m": "c4d9eecfca2ab87c1945afe126590906",
    "ml-100k": "0e33842e24a9c977be4e0107933c0723",
}
"""md5 of the official archives; only these releases are downloaded automatically."""


def download_release(variant: str, target: Path, url: str | None = None) -> Path:
    """Download, verify and unpack ``variant`` so that its files end up directly in ``target``.

    The archive is downloaded to a temporary file, verified against its known md5
    and unpacked into a temporary folder that is renamed into place only when
    complete, so an interrupted download never leaves files that look usable.
    """
    if variant not in ARCHIVE_MD5:
        raise DataError(
            f"automatic download is available for {', '.join(ARCHIVE_MD5)} only; download {variant}.zip from "
            f"{BASE_URL}/ yourself, unpack it and point data_dir (or RECPLUG_DATA_DIR) at the folder"
        )
    url = url or f"{BASE_URL}/{variant}.zip"
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{variant}-") as tmp:
        archive = Path(tmp) / f"{variant}.zip"
        _fetch(url, archive, variant, target)
        digest = _md5(archive)
        if digest != ARCHIVE_MD5[variant]:
            raise DataError(
                f"checksum mismatch for {url}: md5 {digest}, expected {ARCHIVE_MD5[variant]}; the download is "
                f"corrupt or not the official release. Put the unpacked files in {target} yourself"
            )
        unpacked = Path(tmp) / "unpacked"
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(unpacked)
        inner = unpacked / variant if (unpacked / variant).is_dir() else unpacked
        if target.exists():
            shutil.rmtree(target)
        os.replace(inner, target)
    return target


def _fetch(url: str, archive: Path, variant: str, target: Path) -> None:
    try:
        with urllib.request.urlopen(url, timeout=30) as response, archive.open("wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=f"downloading {variant}") as bar:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    bar.update(len(chunk))
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DataError(
            f"could not download {url} ({reason}). If this machine is offline, download {variant}.zip "
            f"elsewhere, unpack it into {target} (or any folder and set data_dir / RECPLUG_DATA_DIR to it)"
        ) from None


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()
