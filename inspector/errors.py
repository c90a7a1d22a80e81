"""Named errors: each says what is wrong with which input, so the CLI and the app can show it."""

from __future__ import annotations


class InspectorError(Exception):
    """Base of every error a user can cause by bad input; its message is shown as is."""


class ImageError(InspectorError):
    """An image file is missing, corrupt, truncated, not an image, or of an unusable shape."""


class ManifestError(InspectorError):
    """A dataset manifest is malformed, refers to unsafe paths, or does not match the files."""


class ModelError(InspectorError):
    """A model directory cannot be used: missing, corrupt, or made for another backbone."""


class SourceError(InspectorError):
    """A frame source (folder, video, camera) cannot be opened or stopped delivering."""


class ConfigError(InspectorError):
    """A setting has a value that cannot work (unknown device, ratio outside (0, 1], ...)."""
