"""Frame sources: an image folder, a video file, a camera by index.

A source yields ``Frame`` items. A frame that cannot be read (a corrupt file in a folder, a
camera that stops delivering) comes through as a frame with an ``error`` instead of ending the
stream, so a station keeps working and the operator sees what was skipped. A source that
cannot be opened at all raises ``SourceError`` before the first frame.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from inspector.errors import ImageError, SourceError
from inspector.images import SourceFormat, list_images, read_image_with_format, to_rgb8

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm")


@dataclass
class Frame:
    index: int
    name: str
    image: np.ndarray | None  # RGB uint8, None when unreadable
    error: str | None = None
    source_format: SourceFormat | None = None  # channels and bit depth before conversion, if known

    @property
    def ok(self) -> bool:
        return self.image is not None


class FrameSource:
    """Base class: iterate to get frames; ``close`` releases devices and files."""

    description = "source"

    def __iter__(self) -> Iterator[Frame]:
        raise NotImplementedError

    def close(self) -> None:
        """Nothing to release by default."""

    def __len__(self) -> int:
        return 0  # unknown length


class FolderSource(FrameSource):
    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        try:
            self.paths = list_images(self.folder)
        except ImageError as exc:
            raise SourceError(f"image folder cannot be used: {exc}") from None
        if not self.paths:
            raise SourceError(f"image folder {self.folder} holds no images")
        self.description = f"folder {self.folder}"

    def __len__(self) -> int:
        return len(self.paths)

    def __iter__(self) -> Iterator[Frame]:
        for i, p in enumerate(self.paths):
            try:
                image, fmt = read_image_with_format(p)
                yield Frame(i, p.name, image, source_format=fmt)
            except ImageError as exc:
                yield Frame(i, p.name, None, str(exc))


class _CaptureSource(FrameSource):
    """Shared reading loop of OpenCV captures (video files and cameras)."""

    def __init__(self, cap: cv2.VideoCapture, description: str) -> None:
        self.cap = cap
        self.description = description

    def _name(self, i: int) -> str:
        return f"frame {i:06d}"

    def __iter__(self) -> Iterator[Frame]:
        i = 0
        try:
            while True:
                ok, bgr = self.cap.read()
                if not ok or bgr is None:
                    end = self._end_of_stream(i)
                    if end is not None:
                        yield end
                    return
                try:
                    yield Frame(i, self._name(i), to_rgb8(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), self._name(i)))
                except ImageError as exc:
                    yield Frame(i, self._name(i), None, str(exc))
                i += 1
        finally:
            self.close()

    def _end_of_stream(self, i: int) -> Frame | None:
        return None

    def close(self) -> None:
        self.cap.release()


class VideoSource(_CaptureSource):
    def __init__(self, path: str | Path) -> None:
        p = Path(path)
        if not p.is_file():
            raise SourceError(f"video file not found: {p}")
        cap = cv2.VideoCapture(str(p))
        ok, first = cap.read() if cap.isOpened() else (False, None)
        if not ok or first is None:
            cap.release()
            raise SourceError(f"video {p} cannot be read (unsupported or corrupt file)")
        cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
        super().__init__(cap, f"video {p}")
        self.n_frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        self.stem = p.stem

    def __len__(self) -> int:
        return max(0, self.n_frames)

    def _name(self, i: int) -> str:
        return f"{self.stem}#{i:06d}"

    def _end_of_stream(self, i: int) -> Frame | None:
        # A file cut short (a copy interrupted, a recorder that crashed) ends before its header's
        # frame count: say so, rather than report a short run as complete.
        if self.n_frames > 0 and i < self.n_frames:
            return Frame(
                i,
                f"{self.stem}#end",
                None,
                f"video truncated: {i} frames read of the {self.n_frames} its header announces",
            )
        return None


class CameraSource(_CaptureSource):
    def __init__(self, index: int) -> None:
        cap = cv2.VideoCapture(index)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"camera {index} does not open (not connected, or in use by another program)")
        super().__init__(cap, f"camera {index}")
        self.index = index

    def _end_of_stream(self, i: int) -> Frame | None:
        # A camera has no end: a failed read means it was disconnected.
        return Frame(i, self._name(i), None, f"camera {self.index} stopped delivering frames (disconnected?)")


def open_source(spec: str | Path) -> FrameSource:
    """A folder, a video file, or ``camera:N`` / a bare integer for a camera."""
    s = str(spec)
    if s.startswith("camera:") or s.isdigit():
        try:
            return CameraSource(int(s.split(":", 1)[-1]))
        except ValueError:
            raise SourceError(f"camera index must be a number, got '{s}'") from None
    p = Path(s)
    if p.is_dir():
        return FolderSource(p)
    if p.suffix.lower() in VIDEO_SUFFIXES or p.is_file():
        return VideoSource(p)
    raise SourceError(f"input not found: {p} (give an image folder, a video file or camera:N)")
