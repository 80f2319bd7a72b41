"""Speech on and off from per-window VAD probabilities: when an utterance starts, and when a pause ends it."""

from __future__ import annotations

from typing import Literal

Transition = Literal["silence", "onset", "speech", "pause"]


class SpeechGate:
    """Hysteresis over window probabilities: ``threshold`` to enter speech, below ``exit_threshold`` for ``pause_windows`` to leave."""

    def __init__(self, threshold: float, exit_threshold: float, pause_windows: int, onset_windows: int = 2) -> None:
        self.threshold = threshold
        self.exit_threshold = exit_threshold
        self.pause_windows = max(1, pause_windows)
        self.onset_windows = max(1, onset_windows)
        self.in_speech = False
        self._run = 0  # consecutive speech windows (in silence) or silent windows (in speech)

    @property
    def silent_windows(self) -> int:
        """Silent windows in a row since the last speech, while in speech (0 otherwise)."""
        return self._run if self.in_speech else 0

    def update(self, probability: float) -> Transition:
        if not self.in_speech:
            self._run = self._run + 1 if probability >= self.threshold else 0
            if self._run >= self.onset_windows:
                self.in_speech, self._run = True, 0
                return "onset"
            return "silence"
        if probability < self.exit_threshold:
            self._run += 1
        elif probability >= self.threshold:
            self._run = 0
        if self._run >= self.pause_windows:
            self.in_speech, self._run = False, 0
            return "pause"
        return "speech"
