"""Where frames come from (image folder, video file, camera index) and start / pause / stop."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QWidget,
)

KINDS = ("Image folder", "Video file", "Camera")


class SourceBarWidget(QWidget):
    """Emits ``start_requested(spec)`` with a spec ``open_source`` understands."""

    start_requested = Signal(str)
    pause_toggled = Signal(bool)
    stop_requested = Signal()

    def __init__(self, default_path: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.kind = QComboBox()
        self.kind.addItems(KINDS)
        self.path = QLineEdit(default_path)
        self.path.setPlaceholderText("folder of images or video file")
        self.camera = QSpinBox()
        self.camera.setRange(0, 16)
        self.camera.setPrefix("camera ")
        self.camera.hide()
        self.browse = QPushButton("Browse…")
        self.start = QPushButton("Start")
        self.pause = QPushButton("Pause (Space)")
        self.pause.setCheckable(True)
        self.stop = QPushButton("Stop")
        for w in (self.kind, self.camera, self.browse, self.start, self.pause, self.stop):
            w.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # letters and arrows stay with the operator's keys
        lay.addWidget(self.kind)
        lay.addWidget(self.path, 1)
        lay.addWidget(self.camera)
        lay.addWidget(self.browse)
        lay.addWidget(self.start)
        lay.addWidget(self.pause)
        lay.addWidget(self.stop)
        self.kind.currentIndexChanged.connect(self._kind_changed)
        self.browse.clicked.connect(self._browse)
        self.start.clicked.connect(lambda: self.start_requested.emit(self.spec()))
        self.pause.toggled.connect(self.pause_toggled)
        self.stop.clicked.connect(self.stop_requested)
        self.set_running(False)

    def spec(self) -> str:
        if self.kind.currentIndex() == 2:
            return f"camera:{self.camera.value()}"
        return self.path.text().strip()

    def set_running(self, running: bool) -> None:
        self.start.setEnabled(not running)
        self.pause.setEnabled(running)
        self.stop.setEnabled(running)
        if not running:
            self.pause.setChecked(False)

    def _kind_changed(self, index: int) -> None:
        self.camera.setVisible(index == 2)
        self.path.setVisible(index != 2)
        self.browse.setVisible(index != 2)

    def _browse(self) -> None:
        if self.kind.currentIndex() == 0:
            chosen = QFileDialog.getExistingDirectory(self, "Image folder", self.path.text())
        else:
            chosen, _ = QFileDialog.getOpenFileName(
                self, "Video file", self.path.text(), "Videos (*.mp4 *.avi *.mov *.mkv *.m4v *.webm);;All files (*)"
            )
        if chosen:
            self.path.setText(chosen)
