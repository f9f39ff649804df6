"""Deprecated import path (recplug 0.1); removed in recplug 0.3. Plugins import from :mod:`recplug.api`."""

from ._deprecated import forwarder

__getattr__ = forwarder("recplug.batches", "recplug._examples")
