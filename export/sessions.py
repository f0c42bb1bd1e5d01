"""One onnxruntime session per graph of an exported folder, all on one execution provider, run with IO
binding so that inputs and outputs stay where the session runs (the KV cache on the GPU with CUDA, never
copied back). onnxruntime cannot move a session's weights: ``to`` opens the sessions anew."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from scr_core import ConfigError, ModelLoadError, ReleasedError, SCRError

from .providers import describe_onnxruntime, ort, resolve_providers, warn_if_both_wheels

log = logging.getLogger(__name__)


class Sessions:
    """``sessions[name]`` is the ``onnxruntime.InferenceSession`` of graph ``name`` (of ``paths``).

    ``names``: which graphs to open (``export.measure`` opens fewer); ``select``'s file is the probe that
    tells whether CUDA really loads, so it must exist whatever is opened.
    """

    def __init__(self, paths: Mapping[str, Path], provider: str = "auto", threads: int | None = None,
                 names: tuple[str, ...] | None = None) -> None:
        self.paths = dict(paths)
        self.names = tuple(self.paths) if names is None else names
        missing = [p for name, p in self.paths.items() if (name in self.names or name == "select") and not p.is_file()]
        if missing:
            raise ModelLoadError(f"{missing[0]} is missing; export the folder again")
        options = ort.SessionOptions()
        # Sessions run one after another (vision, embedding, head, tail): an idle session's spinning
        # worker threads would take the cores from the running one (measured: 3x slower decode on 2 cores).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads:
            options.intra_op_num_threads = threads
        self.options = options
        self._sessions: dict[str, ort.InferenceSession] = {}
        self._open(provider)

    def _open(self, provider: str) -> None:
        try:
            self.providers = resolve_providers(provider, self.paths["select"])
        except SCRError:
            raise
        except Exception as err:  # noqa: BLE001  (onnxruntime's own exception types)
            raise ModelLoadError(f"onnxruntime cannot load {self.paths['select']}: {err}") from None
        for name in self.names:
            self.open(name)
        self.providers = next(iter(self._sessions.values())).get_providers()
        self.device = "cuda" if "CUDAExecutionProvider" in self.providers else "cpu"
        self.onnxruntime = describe_onnxruntime()
        warn_if_both_wheels()
        log.info("onnxruntime: %s; sessions on %s", self.onnxruntime, ", ".join(self.providers))

    def open(self, name: str, path: Path | None = None, options=None) -> None:
        """Open (or open again) graph ``name`` from ``path`` (default: the folder's) on these providers, with
        ``options`` (default: the shared ones; e.g. a copy with profiling on)."""
        if path is not None:
            self.paths[name] = Path(path)
        if name not in self.names:
            self.names += (name,)  # opened again by ``to``
        path = self.paths[name]
        try:
            self._sessions[name] = ort.InferenceSession(str(path), options or self.options,
                                                        providers=self.providers)
        except Exception as err:  # noqa: BLE001  (onnxruntime's own exception types)
            raise ModelLoadError(f"onnxruntime cannot load {path}: {err}") from None

    def __getitem__(self, name: str):
        self.check_open()
        return self._sessions[name]

    def run(self, name: str, feeds: dict, outputs: list[str]) -> dict:
        """One run of graph ``name``: ``feeds`` (numpy arrays or ``OrtValue``s) in, the ``outputs`` as
        ``OrtValue``s on the session's device."""
        session = self[name]
        binding = session.io_binding()
        alive = []  # a CPU OrtValue made from numpy borrows the array's memory: keep both until the run is done
        for key, value in feeds.items():
            if isinstance(value, np.ndarray):
                value = ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(value), self.device, 0)
                alive.append(value)
            binding.bind_ortvalue_input(key, value)
        for key in outputs:
            binding.bind_output(key, self.device)
        session.run_with_iobinding(binding)
        del alive
        return dict(zip(outputs, binding.get_outputs()))

    def to(self, device: str) -> None:
        """The sessions again on ``device`` (``cpu`` or ``cuda``)."""
        kind = str(device).split(":")[0]
        if kind not in ("cpu", "cuda"):
            raise ConfigError(f"device must be cpu or cuda (got {device!r})")
        self.check_open()
        if kind != self.device:
            self._sessions = {}
            self._open(kind)

    def release(self) -> None:
        """Close the sessions (their memory is onnxruntime's)."""
        self._sessions = {}

    @property
    def released(self) -> bool:
        return not self._sessions

    def check_open(self) -> None:
        """``ReleasedError`` once the sessions are closed."""
        if not self._sessions:
            raise ReleasedError("this ONNX model was released; load it again with OnnxVLM(folder)")
