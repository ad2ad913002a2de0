"""Fixed-length training windows over episodes, as a torch `Dataset`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from liquid_driver.data.preprocess import frames_to_tensor

if TYPE_CHECKING:
    from liquid_driver.data.dataset import Episode

__all__ = ["WindowDataset"]


class WindowDataset(Dataset):
    """Windows of `seq_len` consecutive frames cut from each episode.

    Windows start every `stride` frames. When the last regular window does not
    reach the end of an episode, one more window ends at the last frame, so
    every frame of an episode at least `seq_len` long is in some window.
    Episodes shorter than `seq_len` give no window and are counted in
    `short_episodes`.

    Items are (frames, dt, curvature):
        frames: (T, h, w, 3) uint8, or (T, 3, h, w) float32 in [0, 1] with
            `float_frames=True`.
        dt: (T,) float32 seconds since the previous frame.
        curvature: (T,) float32 demonstrated curvature in 1/m.

    Frames stay in the episodes' uint8 arrays and are copied per item, so the
    dataset costs no memory beyond the episodes.
    """

    def __init__(
        self,
        episodes: Sequence[Episode],
        seq_len: int = 16,
        stride: int = 8,
        *,
        float_frames: bool = False,
    ) -> None:
        """Index the windows of `episodes`.

        Raises:
            ValueError: `seq_len` or `stride` is not a positive int.
        """
        for name, value in (("seq_len", seq_len), ("stride", stride)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"invalid WindowDataset {name} {value!r}; expected an int >= 1.")
        self.episodes = list(episodes)
        self.seq_len = seq_len
        self.stride = stride
        self.float_frames = float_frames
        self.short_episodes = sum(1 for episode in self.episodes if len(episode) < seq_len)
        self._windows = self._index_windows(np.zeros(len(self.episodes), dtype=np.int64))

    def _index_windows(self, offsets: np.ndarray) -> np.ndarray:
        """Return (num_windows, 2) rows of (episode index, start frame)."""
        rows = []
        for episode_index, episode in enumerate(self.episodes):
            last_start = len(episode) - self.seq_len
            if last_start < 0:
                continue
            starts = np.arange(int(offsets[episode_index]) % self.stride, last_start + 1, self.stride)
            if starts.size == 0 or starts[-1] != last_start:
                starts = np.append(starts, last_start)
            if starts[0] != 0:
                starts = np.insert(starts, 0, 0)
            rows.append(np.stack([np.full_like(starts, episode_index), starts], axis=1))
        if not rows:
            return np.zeros((0, 2), dtype=np.int64)
        return np.concatenate(rows).astype(np.int64)

    def shift_windows(self, generator: np.random.Generator) -> None:
        """Move each episode's window starts by a random offset in [0, stride).

        Call once per epoch so that window boundaries, and with them the frames
        that start from a zero state, change between epochs. The first and last
        windows of each episode stay in place, so every frame remains covered.
        """
        offsets = generator.integers(0, self.stride, size=len(self.episodes))
        self._windows = self._index_windows(offsets)

    @property
    def frame_count(self) -> int:
        """Number of frames in episodes long enough for a window."""
        return sum(len(episode) for episode in self.episodes if len(episode) >= self.seq_len)

    def __len__(self) -> int:
        return len(self._windows)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"window index {index} out of range for {len(self)} windows.")
        frames, dt, curvature = self._gather([int(index) % len(self)])
        return frames[0], dt[0], curvature[0]

    def curvature_windows(self) -> np.ndarray:
        """Return the curvature of every window, (num_windows, seq_len) float32 in 1/m."""
        rows = [
            self.episodes[episode_index].curvature[start : start + self.seq_len]
            for episode_index, start in self._windows
        ]
        if not rows:
            return np.zeros((0, self.seq_len), dtype=np.float32)
        return np.stack(rows).astype(np.float32)

    def window_ids(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """Return (episode index, start frame) of the windows at `indices`, (len(indices), 2) int64.

        The start frames follow the current grid, which `shift_windows` moves.
        """
        return self._windows[np.asarray(indices, dtype=np.int64)].copy()

    def get_batch(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return windows `indices` stacked: frames (B, T, ...), dt (B, T), curvature (B, T)."""
        return self._gather(indices)

    def _gather(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        frames = []
        dts = []
        curvatures = []
        for index in indices:
            episode_index, start = self._windows[index]
            episode = self.episodes[episode_index]
            stop = start + self.seq_len
            frames.append(episode.frames[start:stop])
            dts.append(episode.dt[start:stop])
            curvatures.append(episode.curvature[start:stop])
        frame_batch = torch.from_numpy(np.stack(frames))  # (B, T, h, w, 3) uint8
        if self.float_frames:
            frame_batch = frames_to_tensor(frame_batch)  # (B, T, 3, h, w) float32
        dt_batch = torch.from_numpy(np.stack(dts).astype(np.float32))
        curvature_batch = torch.from_numpy(np.stack(curvatures).astype(np.float32))
        return frame_batch, dt_batch, curvature_batch
