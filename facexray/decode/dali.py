"""DALI (GPU, NVDEC) backend: decode a local video file on the GPU; frames stay there as torch CUDA tensors.

DALI's video reader decodes sequences of frames in hardware and hands them to torch
without a trip through host memory (DALI's torch plugin copies device to device). It reads
local files of constant frame rate only, cannot seek to N uniform targets the way PyAV does,
and ignores display rotation, so `decode.select_decoder` sends everything else (streams,
`uniform=N`, `fps=F`, rotated phone clips, other codecs) to PyAV and says why.

`nvidia.dali` is imported only when a reader is opened: install it with
`pip install -e ".[gpu]"`. Written against DALI's documented `fn.readers.video`; not yet
run in this project (see README, "GPU").
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from facexray.contracts import Frame
from facexray.decode.info import VideoInfo, new_stats
from facexray.decode.sampling import SampleSpec
from facexray.errors import BackendUnavailable, DecodeError

SEQUENCE_LENGTH = 16
"""Frames decoded per DALI run: one batch of NVDEC work handed to the pipeline at once."""
SUPPORTED_MODES = ("all", "every")
INSTALL_HELP = 'install it with `pip install -e ".[gpu]"` (NVIDIA DALI for CUDA, needs an NVIDIA GPU)'


def import_dali():
    """The `nvidia.dali` module, or `BackendUnavailable` saying how to install it."""
    try:
        import nvidia.dali as dali
        import nvidia.dali.plugin.pytorch  # noqa: F401  (the iterator that hands out torch tensors)
    except ImportError:
        raise BackendUnavailable(f"--decoder dali: NVIDIA DALI is not installed; {INSTALL_HELP}, "
                                 "or use --decoder pyav") from None
    return dali


class DaliVideoReader:
    """An open video decoded by DALI on `device`: iterate it once for `Frame`s whose `image` is a
    (H, W, 3) uint8 CUDA tensor; `info` comes from the PyAV probe `select_decoder` made.

    `every=K` decodes with a stride of K (DALI still decodes the reference frames it needs).
    `stats` counts `decoded` and `yielded` frames as the PyAV reader does.
    """

    def __init__(self, source: str | Path, sample: SampleSpec | str, info: VideoInfo,
                 device: str | torch.device = "cuda", sequence_length: int = SEQUENCE_LENGTH):
        dali = import_dali()
        from nvidia.dali import fn
        from nvidia.dali.plugin.pytorch import DALIGenericIterator, LastBatchPolicy

        self.source_id = str(source)
        self.spec = SampleSpec.coerce(sample)
        if self.spec.mode not in SUPPORTED_MODES:
            raise ValueError(f"the DALI reader samples {' and '.join(SUPPORTED_MODES)}; "
                             f"{self.spec} is read by PyAV (select_decoder does this)")
        self.info = info
        self.stats: dict[str, Any] = {**new_stats(), "decoder": "dali"}
        stride = int(self.spec.value) if self.spec.mode == "every" else 1
        self._fps = info.fps or 25.0
        device = torch.device(device)
        device_id = device.index if device.index is not None else torch.cuda.current_device()
        pipe = dali.Pipeline(batch_size=1, num_threads=2, device_id=device_id, prefetch_queue_depth=2)
        with pipe:
            # With `filenames`, DALI gives timestamps only when `labels` is passed too (else the
            # reader refuses to build); labels=[] numbers the files, and that output goes unused.
            frames, _labels, timestamps = fn.readers.video(
                device="gpu", filenames=[self.source_id], labels=[], sequence_length=sequence_length,
                stride=stride, step=sequence_length * stride, pad_sequences=True, enable_timestamps=True,
                random_shuffle=False, name="reader")
            pipe.set_outputs(frames, timestamps)
        try:
            pipe.build()  # opens the file: a variable-frame-rate one is refused here
            # the iterator decodes the first sequence at once: what NVDEC cannot decode fails here too
            self._iter = DALIGenericIterator(pipe, ["frames", "timestamps"], reader_name="reader",
                                             last_batch_policy=LastBatchPolicy.PARTIAL, auto_reset=False)
        except RuntimeError as e:
            raise DecodeError(self.source_id, f"DALI cannot read it ({str(e).splitlines()[0]})") from None
        self._pipe = pipe
        self._started = False

    def __enter__(self) -> DaliVideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the DALI pipeline (safe to call twice)."""
        self._iter = None
        self._pipe = None

    def __iter__(self) -> Iterator[Frame]:
        if self._started:
            raise RuntimeError("a DaliVideoReader can be iterated only once; open the video again")
        self._started = True
        return self._frames()

    def _frames(self) -> Iterator[Frame]:
        last = -1.0
        for batch in self._iter:
            seq, ts = batch[0]["frames"][0], batch[0]["timestamps"][0].cpu().tolist()
            for image, t in zip(seq, ts):
                if t < 0 or t <= last:   # padding of the last sequence, or a repeat
                    continue
                last = t
                self.stats["decoded"] += 1
                self.stats["yielded"] += 1
                yield Frame(source_id=self.source_id, index=round(t * self._fps), pts=float(t), image=image)
