"""The shift's frames: the newest few in memory, every older one in the audit store.

A 1280x1024 frame with two float32 maps is about 14 MB, so keeping a whole shift in memory runs
out within the hour at 10 frames/s. ``ShiftHistory`` keeps the last ``keep`` items (maps as
float16, enough to draw with a fixed colour range) and, per older frame, only its inspection
id and decision in flat arrays (17 bytes a frame: 1.7 MB for 100,000 frames). Stepping back
past the window reloads the frame and its maps from the store.
"""

from __future__ import annotations

import itertools
import threading
from array import array
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from inspector.station import StationItem

Reload = Callable[[int, "int | None", "str | None"], "StationItem | None"]  # (index, inspection id, queued uid)
DEFAULT_KEEP = 64
DECISION_CODES = {None: 0, "accept": 1, "reject": 2}
DECISION_NAMES = {v: k for k, v in DECISION_CODES.items()}
NO_ID = -1
_TOKENS = itertools.count(1)


def compact_map(m: np.ndarray | None) -> np.ndarray | None:
    """float16 keeps about three significant digits: the drawing needs no more, memory halves."""
    return None if m is None else np.asarray(m, dtype=np.float16)


class ShiftHistory:
    """Items by their index in the shift; ``get`` reloads an evicted one through ``reload``."""

    def __init__(self, keep: int = DEFAULT_KEEP, reload: Reload | None = None) -> None:
        if keep < 1:
            raise ValueError(f"a station must keep at least one frame in memory, got {keep}")
        self.keep = keep
        self._reload = reload
        self._recent: deque[StationItem] = deque()
        self._ids = array("q")  # inspection id per frame, NO_ID while the record waits in the queue
        self._decision_ids = array("q")
        self._decisions = bytearray()
        self._queued: dict[int, str] = {}  # frame index -> queued record's uid, until it is flushed
        self._reloaded: OrderedDict[int, StationItem] = OrderedDict()  # the operator stepping back
        self._lock = threading.Lock()  # the stream's thread appends while the UI's thread reads
        self.token = next(_TOKENS)  # stamped on each item: a late event from a replaced shift is known as such

    def __len__(self) -> int:
        return len(self._ids)

    def __getitem__(self, index: int) -> StationItem:
        item = self.get(index if index >= 0 else len(self) + index)
        if item is None:
            raise IndexError(f"frame {index} of the shift is not available")
        return item

    def __iter__(self) -> Iterator[StationItem]:
        """The items still in memory, oldest first (the full shift is in the audit store)."""
        with self._lock:
            return iter(list(self._recent))

    @property
    def in_memory(self) -> int:
        return len(self._recent) + len(self._reloaded)

    @property
    def first_in_memory(self) -> int:
        with self._lock:
            return self._recent[0].index if self._recent else len(self)

    def append(self, item: StationItem) -> None:
        item.result.anomaly_map = compact_map(item.result.anomaly_map)  # type: ignore[assignment]
        item.gradcam = compact_map(item.gradcam)
        with self._lock:
            item.index, item.shift = len(self._ids), self.token
            self._ids.append(NO_ID if item.inspection_id is None else item.inspection_id)
            self._decision_ids.append(NO_ID)
            self._decisions.append(0)
            if item.queued_uid is not None:
                self._queued[item.index] = item.queued_uid
            self._recent.append(item)
            while len(self._recent) > self.keep:
                self._recent.popleft()

    def note(self, item: StationItem) -> None:
        """Keeps an item's ids and decision for when it has left memory."""
        with self._lock:
            i = item.index
            if not 0 <= i < len(self._ids):
                return
            self._ids[i] = NO_ID if item.inspection_id is None else item.inspection_id
            self._decision_ids[i] = NO_ID if item.decision_id is None else item.decision_id
            self._decisions[i] = DECISION_CODES.get(item.decision, 0)
            if item.inspection_id is not None:
                self._queued.pop(i, None)

    def get(self, index: int) -> StationItem | None:
        """The item at ``index``: from memory, else reloaded from the store (None if it cannot be)."""
        with self._lock:
            if not 0 <= index < len(self._ids):
                return None
            if self._recent and index >= self._recent[0].index:
                return self._recent[index - self._recent[0].index]
            if index in self._reloaded:
                self._reloaded.move_to_end(index)
                return self._reloaded[index]
            inspection_id = self._ids[index]
            uid = self._queued.get(index)
        if self._reload is None or (inspection_id == NO_ID and uid is None):
            return None
        item = self._reload(index, None if inspection_id == NO_ID else inspection_id, uid)
        if item is None:
            return None
        with self._lock:
            item.index, item.shift = index, self.token
            self._ids[index] = item.inspection_id if item.inspection_id is not None else NO_ID
            if item.inspection_id is not None:
                self._queued.pop(index, None)
            item.decision = DECISION_NAMES[self._decisions[index]]
            item.decision_id = None if self._decision_ids[index] == NO_ID else self._decision_ids[index]
            self._reloaded[index] = item
            while len(self._reloaded) > 2:  # the frame shown and the one just left
                self._reloaded.popitem(last=False)
        return item

    def queued_uid(self, index: int) -> str | None:
        with self._lock:
            return self._queued.get(index)
