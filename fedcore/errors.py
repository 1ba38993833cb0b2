"""Exceptions raised by fedcore. Each message names the value and what to do."""

from __future__ import annotations


class FedError(Exception):
    """Base class of every error fedcore raises on purpose."""


class ImageLoadError(FedError):
    """An image could not be read.

    ``kind`` is a short machine-readable reason: ``not_found``, ``empty``,
    ``unsupported``, ``corrupt``, ``too_large``.
    """

    def __init__(self, message: str, *, kind: str = "corrupt", source: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.source = source


class CheckpointError(FedError):
    """A model checkpoint is missing, unreadable or does not match its metadata."""


class DatasetError(FedError):
    """A training or evaluation dataset is missing, malformed or empty."""


class StoreError(FedError):
    """The history database rejected a request."""
