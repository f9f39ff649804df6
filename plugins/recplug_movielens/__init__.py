"""MovieLens datasets (ml-1m, ml-100k, ml-10m, ml-20m, ml-25m, ml-latest(-small)) for recplug."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Literal

import attrs

from recplug.api import (
    DataError,
    Dataset,
    Interactions,
    RunContext,
    build_interactions,
    cache_dir,
    hookimpl,
    load_interactions,
    save_interactions,
)

from .download import download_release
from .formats import FORMATS, file_sha256, read_movies, read_ratings, read_users

Variant = Literal["ml-1m", "ml-100k", "ml-10m", "ml-20m", "ml-25m", "ml-latest-small", "ml-latest"]


@attrs.frozen
class MovieLensOptions:
    variant: Variant = attrs.field(default="ml-1m", metadata={"doc": "Which MovieLens release."})
    data_dir: str | None = attrs.field(
        default=None,
        metadata={
            "doc": "Folder holding the release's files (or a folder with a sub-folder named after the variant); "
            "relative to the spec's folder. Default: $RECPLUG_DATA_DIR, else the recplug cache, downloading the "
            "release there.",
            "path": True,
        },
    )
    download: bool = attrs.field(default=True, metadata={"doc": "Download into the cache when no copy is found."})
    cache: bool = attrs.field(
        default=True,
        metadata={"doc": "Keep the parsed arrays in the recplug cache, keyed by the sha256 of every file read, and "
                         "memory-map them on later loads."},
    )


class MovieLens(Dataset):
    """MovieLens ratings as time-ordered sequences of movie tokens, with titles, genres and user features."""

    options: MovieLensOptions

    def load(self, context: RunContext) -> Interactions:
        folder = self.locate()
        fmt = FORMATS[self.options.variant]
        if self.options.cache:  # keyed by every file read: editing movies.dat or users.dat is a new cache entry
            files = [f for f in (fmt.ratings, fmt.movies, fmt.users) if f]
            key = hashlib.sha256("".join(file_sha256(folder / f) for f in files).encode()).hexdigest()
            cached = cache_dir() / "parsed" / f"{self.options.variant}-{key}"
            if (data := load_interactions(cached)) is not None:
                return attrs.evolve(data, source={**data.source, "path": str(folder)})
        data = self.parse(folder)
        if self.options.cache:
            save_interactions(data, cached)
        return data

    def parse(self, folder: Path) -> Interactions:
        """Read and tokenise the release's files in ``folder``."""
        fmt = FORMATS[self.options.variant]
        raw = read_ratings(folder / fmt.ratings)
        movies = read_movies(folder / fmt.movies)
        users = read_users(folder / fmt.users) if fmt.users else None
        return build_interactions(
            raw.users,
            raw.items,
            raw.ratings,
            raw.timestamps,
            fingerprint=raw.fingerprint,
            user_ids=users.frame.index.to_numpy() if users is not None else None,
            item_ids=movies.frame.index.to_numpy(),
            item_info=movies,
            user_info=users,
            source={"dataset": "movielens", "variant": self.options.variant, "path": str(folder)},
        )

    def locate(self) -> Path:
        """The folder holding this release's files: spec, environment, or cache (downloading if needed)."""
        variant = self.options.variant
        ratings = FORMATS[variant].ratings
        for origin, value in (("data_dir", self.options.data_dir), ("RECPLUG_DATA_DIR", os.environ.get("RECPLUG_DATA_DIR"))):
            if not value:
                continue
            base = Path(value).expanduser()
            for folder in (base, base / variant):
                if (folder / ratings).is_file():
                    return folder
            if not base.is_dir():
                raise DataError(f"{origin} {str(base)!r} does not exist (set it to the folder holding {ratings})")
            raise DataError(f"{origin} {str(base)!r} holds no {ratings} (looked in it and in {base / variant})")
        folder = cache_dir() / "datasets" / variant
        if (folder / ratings).is_file():
            return folder
        if not self.options.download:
            raise DataError(f"{variant} not found in {folder} and download = false; set data_dir or RECPLUG_DATA_DIR")
        return download_release(variant, folder)


@hookimpl
def register_components(register) -> None:
    register.dataset("movielens", MovieLens, MovieLensOptions)
