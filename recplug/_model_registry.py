"""The model registry: every fitted recommender versioned, inspectable, safely reloadable, ready to serve.

Layout under the registry root (``RECPLUG_REGISTRY`` or :func:`recplug._paths.registry_dir`)::

    <name>/<version>/entry.json   what the entry records (plugin, options, spec, metrics, checksums, ...)
    <name>/<version>/weights.pt   the fitted state: a flat dict of tensors (loaded with weights_only=True)
    <name>/<version>/vocab.npz    raw id <-> token vocabularies and the users' sequences (no pickles)
    <name>/<version>/info.json    item and user metadata (titles, genres, ...)
    <name>/aliases.json           {"production": 3, ...}
    .lock                         serialises version allocation between processes

A version is written into a hidden temporary folder, fsynced, and renamed into place
under the lock, so no reader ever sees half of one. Nothing in an entry is a pickle:
options and spec are JSON, rebuilt through the plugin's own attrs class.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

import attrs
import numpy as np
import pandas as pd
import torch
from filelock import FileLock

from ._components import Recommender
from ._data import FeatureKind, FeatureTable, Interactions
from ._devices import map_on_cores
from ._errors import RecplugError, SpecError
from ._paths import check_name, file_sha256, registry_dir
from ._plugin_manager import PluginManager, get_plugin_manager
from ._spec import ComponentSpec
from ._version import __version__

FORMAT_VERSION = 2
"""Bumped when the layout or entry.json changes incompatibly; older formats keep loading.
2: info.json holds typed metadata tables (``{"kinds": ..., "columns": ...}``); the entry's plugin provenance."""
BATCH_USERS = 64
"""Users scored per batch in bulk: small batches keep a transformer's activations in cache (every ML-1M user's
top 100, LOO-fast architecture, 2 cores: 1.2-1.6 s at 64 users per batch, 1.8-2.3 s at 1,024)."""
Done = TypeVar("Done")
"""What a function over batches of users returns."""
Tokens = Sequence[int] | np.ndarray
"""Item tokens of one history: a list or an int array."""
_REF = re.compile(r"^(?P<name>[^:@]+)(?::(?P<version>\d+)|@(?P<alias>[A-Za-z0-9._-]+))?$")


class RegistryError(RecplugError):
    """An unknown, damaged or incompatible registry entry."""


@attrs.frozen
class ModelRef:
    """``name``, ``name:version`` or ``name@alias``."""

    name: str
    version: int | None = None
    alias: str | None = None

    @classmethod
    def parse(cls, text: str) -> ModelRef:
        match = _REF.match(text.strip())
        if not match:
            raise RegistryError(f"invalid model reference {text!r} (use NAME, NAME:VERSION or NAME@ALIAS)")
        version = match["version"]
        return cls(match["name"], int(version) if version else None, match["alias"])

    def __str__(self) -> str:
        return self.name + (f":{self.version}" if self.version else "") + (f"@{self.alias}" if self.alias else "")


class ModelRegistry:
    """A directory-backed model registry."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root).expanduser() if root else registry_dir()

    # -- writing ---------------------------------------------------------------------------------------------

    def register(
        self,
        name: str,
        recommender: Recommender,
        *,
        provenance: dict[str, Any],
        spec: dict[str, Any],
        data: Interactions,
        metrics: dict[str, dict[int, float]],
        protocol: dict[str, Any],
        tuning: dict[str, Any] | None = None,
        seed: int | None = None,
    ) -> int:
        """Store a fitted recommender as the next version of ``name``; returns the version.

        ``provenance`` is :meth:`ComponentSpec.provenance <recplug._spec.ComponentSpec.provenance>`: the plugin,
        options and training options that rebuild the recommender on load. ``tuning`` records the search that
        chose its configuration (``recplug tune``: study, trial, parameters); ``seed`` the seed it was trained with."""
        try:
            check_name(name, "model name")
        except ValueError as exc:
            raise RegistryError(str(exc)) from None
        (self.root / name).mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=self.root / name))
        try:
            torch.save(recommender.state_dict(), staging / "weights.pt")
            np.savez(
                staging / "vocab.npz",
                user_ids=data.user_ids, item_ids=data.item_ids, offsets=data.offsets, items=data.items,
            )  # fmt: skip
            info = {"items": data.item_info.to_json() if data.item_info is not None else None,
                    "users": data.user_info.to_json() if data.user_info is not None else None}  # fmt: skip
            (staging / "info.json").write_text(json.dumps(info))
            entry = {
                "format_version": FORMAT_VERSION,
                "name": name,
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                **provenance,
                "spec": spec,
                "metrics": {m: {str(k): v for k, v in by_k.items()} for m, by_k in metrics.items()},
                "protocol": protocol,
                **({"tuning": tuning} if tuning else {}),
                **({"seed": seed} if seed is not None else {}),
                "data": {**data.source, **data.summary(), "fingerprint_sha256": data.fingerprint},
                "versions": {"recplug": __version__, "torch": torch.__version__, "python": platform.python_version()},
                "files": {f: file_sha256(staging / f) for f in ("weights.pt", "vocab.npz", "info.json")},
            }
            with self._lock():
                version = max(self._versions(name), default=0) + 1
                entry["version"] = version
                _write_entry(staging / "entry.json", entry)
                _fsync_dir(staging)
                os.rename(staging, self.root / name / str(version))
                _fsync_dir(self.root / name)
            return version
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)

    def alias(self, ref: str, alias: str) -> None:
        """Point ``alias`` of the model at the referenced version."""
        try:
            check_name(alias, "alias")
        except ValueError as exc:
            raise RegistryError(str(exc)) from None
        if alias.isdigit():
            raise RegistryError(f"invalid alias {alias!r}: an alias is not only digits (those are versions)")
        name, version = self.resolve(ref)
        with self._lock():
            aliases = self._aliases(name)
            aliases[alias] = version
            _atomic_write_text(self.root / name / "aliases.json", json.dumps(aliases, indent=2))

    def delete(self, ref: str) -> None:
        """Delete one version (its aliases go with it)."""
        name, version = self.resolve(ref)
        with self._lock():
            aliases = {a: v for a, v in self._aliases(name).items() if v != version}  # read while still valid
            target = self.root / name / str(version)
            trash = self.root / name / f".deleting-{version}"
            os.rename(target, trash)  # atomically invisible, then removed
            shutil.rmtree(trash)
            _atomic_write_text(self.root / name / "aliases.json", json.dumps(aliases, indent=2))

    # -- reading ---------------------------------------------------------------------------------------------

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))

    def list_versions(self) -> list[dict[str, Any]]:
        """One summary per version: name, version, aliases, created, plugin, headline metrics."""
        rows = []
        for name in self.names():
            aliases = self._aliases(name)
            for version in sorted(self._versions(name)):
                entry = self.entry(name, version, verify=False)
                rows.append({
                    "name": name, "version": version, "created": entry["created"],
                    "aliases": sorted(a for a, v in aliases.items() if v == version),
                    "plugin": entry["plugin"]["name"], "metrics": entry["metrics"],
                    "split": entry["protocol"].get("splitter"),
                })  # fmt: skip
        return rows

    def resolve(self, ref: str | ModelRef) -> tuple[str, int]:
        """(name, version) of a reference; unknown names, versions and aliases list what exists."""
        ref = ModelRef.parse(ref) if isinstance(ref, str) else ref
        names = self.names()
        if ref.name not in names:
            raise RegistryError(f"no model named {ref.name!r} in {self.root} (models: {', '.join(names) or 'none'})")
        versions = sorted(self._versions(ref.name))
        if ref.alias:
            aliases = self._aliases(ref.name)
            if ref.alias not in aliases:
                listing = ", ".join(f"{a} -> {v}" for a, v in sorted(aliases.items())) or "none"
                hint = f"; for version {ref.alias} write {ref.name}:{ref.alias}" if ref.alias.isdigit() else ""
                raise RegistryError(f"model {ref.name!r} has no alias {ref.alias!r}{hint} (aliases: {listing})")
            return ref.name, aliases[ref.alias]
        if ref.version is None:
            if not versions:
                raise RegistryError(f"model {ref.name!r} has no versions")
            return ref.name, versions[-1]
        if ref.version not in versions:
            raise RegistryError(f"model {ref.name!r} has no version {ref.version} (versions: {', '.join(map(str, versions))})")
        return ref.name, ref.version

    def entry(self, name: str, version: int, verify: bool = True) -> dict[str, Any]:
        """The entry.json of a version, checked for integrity and format compatibility."""
        folder = self.root / name / str(version)
        path = folder / "entry.json"
        try:
            entry = json.loads(path.read_text())
        except FileNotFoundError:
            if not folder.is_dir():
                raise  # the version was deleted meanwhile: load() says so
            raise RegistryError("entry.json is missing", where=str(path)) from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise RegistryError(f"entry.json is damaged ({exc})", where=str(path)) from None
        if entry.get("entry_sha256") != _entry_digest(entry):
            raise RegistryError("entry.json was modified or damaged (its checksum does not match)", where=str(path))
        if entry.get("format_version", 0) > FORMAT_VERSION:
            raise RegistryError(
                f"written by recplug {entry.get('versions', {}).get('recplug', '?')} in registry format "
                f"{entry['format_version']}; this recplug ({__version__}) reads formats up to {FORMAT_VERSION}: "
                f"upgrade recplug to at least {entry.get('versions', {}).get('recplug', 'that version')}",
                where=str(path),
            )
        if verify:
            for file, digest in entry["files"].items():
                target = folder / file
                if not target.is_file():
                    if not folder.is_dir():
                        raise FileNotFoundError(target)  # deleted meanwhile: load() says so
                    raise RegistryError("file is missing", where=str(target))
                if file_sha256(target) != digest:
                    raise RegistryError("file was modified or truncated (sha256 mismatch); refusing to load it", where=str(target))
        return entry

    def show(self, ref: str) -> dict[str, Any]:
        name, version = self.resolve(ref)
        entry = self.entry(name, version)
        entry["aliases"] = sorted(a for a, v in self._aliases(name).items() if v == version)
        entry["path"] = str(self.root / name / str(version))
        return entry

    def load(self, ref: str, plugins: PluginManager | None = None) -> ServedModel:
        """Rebuild the recommender of a version through its plugin, verified, ready to recommend.

        A load sees a whole version: one deleted while it is read is a :class:`RegistryError` saying so."""
        name, version = self.resolve(ref)
        try:
            return self._load(name, version, plugins or get_plugin_manager())
        except FileNotFoundError:
            if (self.root / name / str(version)).is_dir():
                raise
            raise RegistryError(f"{name}:{version} was deleted while it was being loaded") from None

    def _load(self, name: str, version: int, plugins: PluginManager) -> ServedModel:
        entry = self.entry(name, version)
        folder = self.root / name / str(version)
        try:
            recommender = ComponentSpec.from_record(entry, plugins, f"{name}:{version}").build(plugins)
        except SpecError as exc:
            raise RegistryError(exc.message, where=exc.where) from None
        vocab = _read_vocab(folder)
        try:
            state = torch.load(folder / "weights.pt", map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise
        except Exception as exc:
            raise RegistryError(f"weights refused: {type(exc).__name__}: {str(exc).splitlines()[0]}", where=str(folder / "weights.pt")) from None
        try:
            recommender.load_state_dict(state, vocab)
        except (RuntimeError, KeyError, ValueError) as exc:  # shapes or names that do not fit the recorded options
            raise RegistryError(f"the weights do not fit the recorded options: {str(exc).splitlines()[0]}",
                                where=str(folder / "weights.pt")) from None  # fmt: skip
        return ServedModel(f"{name}:{version}", entry, recommender, vocab)

    # -- internals ------------------------------------------------------------------------------------------

    def _versions(self, name: str) -> list[int]:
        folder = self.root / name
        return [int(p.name) for p in folder.iterdir() if p.name.isdigit()] if folder.is_dir() else []

    def _aliases(self, name: str) -> dict[str, int]:
        """``{alias: version}``; anything but a table of safe names to existing versions is a damaged file."""
        path = self.root / name / "aliases.json"
        if not path.is_file():
            return {}
        try:
            aliases = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise RegistryError(f"aliases.json is damaged ({exc}); fix or delete it", where=str(path)) from None
        versions = set(self._versions(name))
        if not isinstance(aliases, dict):
            raise RegistryError("aliases.json is damaged (not a table of alias -> version)", where=str(path))
        for alias, version in aliases.items():
            if not (isinstance(alias, str) and _is_safe(alias)) or type(version) is not int or version not in versions:
                raise RegistryError(f"aliases.json is damaged: {alias!r} -> {version!r} is not an alias of an existing "
                                    f"version ({', '.join(map(str, sorted(versions))) or 'none'})", where=str(path))  # fmt: skip
        return aliases

    @contextmanager
    def _lock(self) -> Iterator[None]:
        """Serialises writers across processes (a portable file lock: fcntl on POSIX, msvcrt on Windows)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with FileLock(self.root / ".lock"):
            yield


@attrs.define
class ServedModel:
    """A registered recommender reloaded for serving: raw MovieLens ids in, raw ids with metadata out."""

    ref: str
    entry: dict[str, Any]
    recommender: Recommender
    vocab: Interactions
    user_vectors: torch.Tensor | None = None
    """Every known user's :meth:`~recplug.api.Recommender.encode` of the recorded history, once
    :meth:`encode_known_users` ran (``recplug serve`` does); recommending for them is then a decode."""

    def recommend_all(self, k: int, batch_size: int = BATCH_USERS, max_history: int = 512,
                      progress: bool = False) -> pd.DataFrame:  # fmt: skip
        """Top-``k`` of every known user from their recorded history, in batches (bulk export).

        A long frame: ``user_id``, ``rank`` (1 = best), ``item_id`` and ``score``, raw ids as the dataset has
        them; items in a user's history are never recommended. ``max_history`` caps what the recommender sees
        (every seen item is still excluded), as evaluation does.
        """
        from ._evaluation import seen_mask

        vocab, k = self.vocab, min(k, self.vocab.n_items)

        def recommend(batch: tuple[np.ndarray, torch.Tensor]) -> tuple[np.ndarray, torch.Tensor, torch.Tensor]:
            users, histories = batch
            seen = seen_mask(vocab, vocab.offsets[users], vocab.offsets[users + 1])
            top, value = self.recommender.recommend(torch.from_numpy(users), histories, k, exclude_items=seen,
                                                    exclude_history=False)  # fmt: skip
            return users, top, value

        tops, scores = np.zeros((vocab.n_users, k), dtype=np.int64), np.zeros((vocab.n_users, k), dtype=np.float32)
        for users, top, value in self._over_recorded_batches(recommend, batch_size, max_history, progress):
            tops[users], scores[users] = top.cpu().numpy(), value.cpu().float().numpy()
        return pd.DataFrame({
            "user_id": np.repeat(vocab.user_ids, k),
            "rank": np.tile(np.arange(1, k + 1), vocab.n_users),
            "item_id": vocab.item_ids[tops.reshape(-1)],
            "score": scores.reshape(-1),
        })  # fmt: skip

    def encode_known_users(self, batch_size: int = BATCH_USERS, max_history: int = 512) -> None:
        """Fill :attr:`user_vectors` when the recommender encodes users (otherwise nothing changes)."""
        if not self.recommender.encodes:
            return

        def encode(batch: tuple[np.ndarray, torch.Tensor]) -> tuple[np.ndarray, torch.Tensor]:
            users, histories = batch
            return users, self.recommender.encode(torch.from_numpy(users), histories).cpu()

        parts = list(self._over_recorded_batches(encode, batch_size, max_history))
        vectors = torch.zeros(self.vocab.n_users, parts[0][1].shape[1]) if parts else None
        for users, encoded in parts:
            vectors[torch.from_numpy(users)] = encoded  # type: ignore[index]
        self.user_vectors = vectors

    def _over_recorded_batches(self, work: Callable[[tuple[np.ndarray, torch.Tensor]], Done], batch_size: int,
                               max_history: int, progress: bool = False) -> Iterator[Done]:  # fmt: skip
        """``work`` over (user tokens, their left-padded recorded histories) in batches of similar history
        length, spread over the CPU cores (:func:`map_on_cores`); results in batch order."""
        from tqdm import tqdm

        from ._evaluation import by_length
        from ._split import gather_histories

        vocab = self.vocab
        order = by_length(np.diff(vocab.offsets))

        def batch(lo: int) -> tuple[np.ndarray, torch.Tensor]:
            users = order[lo : lo + batch_size]
            start, end = vocab.offsets[users], vocab.offsets[users + 1]
            longest = int((end - start).max(initial=1)) or 1
            return users, gather_histories(vocab, start, end, min(longest, max_history))

        starts = range(0, vocab.n_users, batch_size)
        results = map_on_cores(lambda lo: work(batch(lo)), starts, self.recommender.device)
        yield from tqdm(results, total=len(starts), desc="recommending", disable=not progress, leave=False)

    def history(self, user_id: Any) -> list[Any]:
        """The raw item ids the user interacted with, oldest first."""
        return self.vocab.item_ids[self.vocab.sequence(self._user_token(user_id))].tolist()

    def recommend(self, user_id: Any = None, history: list[Any] | None = None, k: int = 10,
                  user_features: dict[str, Any] | None = None) -> list[dict[str, Any]]:  # fmt: skip
        """Top-``k`` items (raw id, score, metadata) for a known user and/or an explicit history of raw ids.

        With only ``user_id``, the user's recorded history is used. With only ``history`` (a new user:
        cold start), the recommender sees no user identity, just the history; ``user_features`` (e.g.
        ``{"gender": "F", "age": 25, "occupation": 4}``) describe such a new user to a model whose user
        tower is built from features.
        """
        if user_id is None and history is None:
            raise RecplugError("give a user id, a history, or both")
        if user_id is not None and user_features is not None:
            raise RecplugError("user features describe a new user: give them with a history, not a user id")
        user = self._user_token(user_id) if user_id is not None else -1
        raw_history = history if history is not None else self.history(user_id)
        features = pd.DataFrame([user_features]) if user_features is not None else None
        top, scores = self.recommend_tokens([user], [self.item_tokens(raw_history)], k, new_user_features=features)
        ids = self.vocab.item_ids[top[0].numpy()].tolist()
        return [{"item_id": i, "score": float(s), **self.item_metadata(int(t))}
                for i, t, s in zip(ids, top[0].tolist(), scores[0].tolist())]  # fmt: skip

    def recommend_tokens(self, users: Sequence[int], histories: Sequence[Tokens | None], k: int,
                         exclude: Sequence[Tokens] | None = None, new_user_features: pd.DataFrame | None = None,
                         max_history: int = 512) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        """Top-``k`` tokens and scores ``[B, k]`` for a batch in one pass (what ``recplug serve`` batches into).

        ``users`` are user tokens (``-1``: a new user); ``histories`` item tokens oldest first, or None for a
        known user's recorded history (answered from :attr:`user_vectors` when they are computed). Every item
        of a history and of ``exclude`` is left out. The recommender sees the last ``max_history`` items.
        """
        from ._components import top_k

        vocab = self.vocab
        rows = [vocab.sequence(u) if h is None else np.asarray(h, dtype=np.int64) for u, h in zip(users, histories)]
        excluded = [np.concatenate([h, np.asarray(x, dtype=np.int64)]) for h, x in zip(rows, exclude)] if exclude else rows
        lengths = np.array([len(r) for r in excluded], dtype=np.int64)
        seen = torch.zeros(len(rows), vocab.n_items, dtype=torch.bool)
        if lengths.sum():
            seen[torch.from_numpy(np.repeat(np.arange(len(rows)), lengths)), torch.from_numpy(np.concatenate(excluded))] = True
        user_tokens, k = torch.tensor(users, dtype=torch.int64), min(k, vocab.n_items)
        if self.user_vectors is None or new_user_features is not None:
            padded = _pad_left([r[-max_history:] for r in rows], vocab.pad_token)
            return self.recommender.recommend(user_tokens, padded, k, exclude_items=seen, exclude_history=False,
                                              new_user_features=new_user_features)  # fmt: skip
        vectors = self.user_vectors[user_tokens.clamp(min=0)]
        given = [i for i, h in enumerate(histories) if h is not None]
        if given:
            padded = _pad_left([rows[i][-max_history:] for i in given], vocab.pad_token)
            vectors[given] = self.recommender.encode(user_tokens[given], padded).cpu()
        return top_k(self.recommender.decode(vectors), k, seen)

    def item_metadata(self, token: int) -> dict[str, Any]:
        """The item's metadata as JSON-ready values (empty when the dataset has none)."""
        info = self.vocab.item_info
        return info.record(token) if info is not None else {}

    def describe(self, token: int) -> str:
        """A one-line label of an item from its metadata (empty when the dataset has none)."""
        info = self.vocab.item_info
        return info.describe(token) if info is not None else ""

    def user_token(self, user_id: Any) -> int | None:
        """The token of a raw user id; None when the model never saw that user."""
        tokens, found = _find(self.vocab.user_ids, [user_id])
        return int(tokens[0]) if found[0] else None

    def lookup_items(self, raw: list[Any]) -> tuple[list[int], list[Any]]:
        """Tokens of raw item ids, and the ids it does not know."""
        tokens, found = _find(self.vocab.item_ids, raw)
        return tokens.tolist(), [r for r, ok in zip(raw, found) if not ok]

    def _user_token(self, user_id: Any) -> int:
        token = self.user_token(user_id)
        if token is None:
            raise RecplugError(f"unknown user id {user_id} (known ids: {self.vocab.user_ids[0]}..{self.vocab.user_ids[-1]})")
        return token

    def item_tokens(self, raw: list[Any]) -> list[int]:
        """Tokens of raw item ids; unknown ids are an error naming them."""
        tokens, unknown = self.lookup_items(raw)
        if unknown:
            raise RecplugError(f"unknown item id(s) in the history: {', '.join(map(str, unknown[:5]))}")
        return tokens


def _find(sorted_ids: np.ndarray, raw: list[Any]) -> tuple[np.ndarray, np.ndarray]:
    """Positions of ``raw`` ids in a sorted id array, and which were found. Integer ids also match their decimal
    strings ("42"); string ids match any id written as text."""
    given = np.asarray(raw) if raw else np.zeros(0, dtype=np.int64)
    if sorted_ids.dtype.kind in "iu" and given.dtype.kind in "iu":  # integers: the usual case, no Python loop
        wanted, valid = given.astype(np.int64), np.ones(len(raw), dtype=bool)
    elif sorted_ids.dtype.kind in "iu":
        values = [int(r) if isinstance(r, (int, np.integer)) and not isinstance(r, bool) else
                  int(r) if isinstance(r, str) and r.strip().lstrip("-").isdigit() else None for r in raw]  # fmt: skip
        wanted = np.array([v if v is not None else 0 for v in values], dtype=np.int64)
        valid = np.array([v is not None for v in values], dtype=bool)
    else:
        wanted = np.array([str(r) for r in raw], dtype=str)
        valid = np.ones(len(raw), dtype=bool)
    positions = np.searchsorted(sorted_ids, wanted) if len(raw) else np.zeros(0, dtype=np.int64)
    inside = positions < len(sorted_ids)
    found = valid & inside
    found[found] = sorted_ids[positions[found]] == wanted[found]
    return np.where(found, positions, 0).astype(np.int64), found


def _pad_left(rows: Sequence[Tokens], pad: int) -> torch.Tensor:
    """``[len(rows), longest]`` int64, each row right-aligned after ``pad`` tokens (at least one column)."""
    padded = np.full((len(rows), max((len(r) for r in rows), default=1) or 1), pad, dtype=np.int64)
    for i, row in enumerate(rows):
        if len(row):
            padded[i, -len(row):] = row
    return torch.from_numpy(padded)


def _read_vocab(folder: Path) -> Interactions:
    try:
        with np.load(folder / "vocab.npz", allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in ("user_ids", "item_ids", "offsets", "items")}
    except FileNotFoundError:
        raise
    except (ValueError, OSError) as exc:
        raise RegistryError(f"vocabulary refused: {exc}", where=str(folder / "vocab.npz")) from None
    info = json.loads((folder / "info.json").read_text())
    n = len(arrays["items"])
    return Interactions(
        **arrays,
        ratings=np.zeros(n, dtype=np.float32),
        timestamps=np.zeros(n, dtype=np.int64),
        fingerprint="",
        item_info=_metadata_table(info["items"]),
        user_info=_metadata_table(info["users"]),
    )


def _is_safe(name: str) -> bool:
    try:
        check_name(name, "name")
    except ValueError:
        return False
    return True


def _metadata_table(stored: dict[str, Any] | None) -> FeatureTable | None:
    """A metadata table from info.json; format 1 stored plain columns, read as text and numbers."""
    if not stored:
        return None
    if "kinds" in stored:
        return FeatureTable.from_json(stored)
    frame = pd.DataFrame({c: v for c, v in stored.items() if c not in ("item_id", "user_id")})
    kinds: dict[str, FeatureKind] = {c: "numeric" if pd.api.types.is_numeric_dtype(frame[c]) else "text" for c in frame}
    return FeatureTable(frame, kinds)


def _entry_digest(entry: dict[str, Any]) -> str:
    body = {k: v for k, v in entry.items() if k != "entry_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _write_entry(path: Path, entry: dict[str, Any]) -> None:
    entry["entry_sha256"] = _entry_digest(entry)
    with open(path, "w") as f:
        json.dump(entry, f, indent=2)
        f.flush()
        os.fsync(f.fileno())


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _fsync_dir(folder: Path) -> None:
    for file in folder.iterdir():
        if file.is_file():
            with open(file, "rb") as f:
                os.fsync(f.fileno())
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

