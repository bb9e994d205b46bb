"""ModelHolder: the predictor currently serving, swapped atomically while requests are in flight."""

from __future__ import annotations

import ctypes
import functools
import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from model.predictor import BasePredictor


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None on a C library without it (musl, macOS)."""
    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None


def return_freed_memory() -> None:
    """Hand the memory a freed model leaves in the C allocator's arenas back to the system.

    glibc keeps freed blocks for reuse: without this, each hot swap on CPU left the API's RSS 20-80 MiB
    higher (+202 MiB/h over a soak with six swaps, flat between them; docs/RELIABILITY.md).
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


class ModelHolder:
    """Holds one ``Predictor``; a swap never interrupts work already bound to the previous one.

    Callers take a reference with :attr:`predictor` and keep using it for the whole request, so a
    swap only changes what *new* requests get. The replaced predictor is freed when its last
    in-flight batch drops it; :meth:`release_retired` then hands its memory back (the C allocator's
    arenas on CPU, cached GPU memory on CUDA).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._predictor: BasePredictor | None = None
        self._retired: list[tuple[weakref.ref[BasePredictor], bool]] = []

    @property
    def predictor(self) -> BasePredictor | None:
        """The predictor new requests should use (None before the first load)."""
        return self._predictor

    @property
    def version(self) -> str | None:
        """Version of the serving predictor."""
        predictor = self._predictor
        return predictor.version if predictor is not None else None

    @property
    def ready(self) -> bool:
        """Whether a warmed-up predictor is serving; stays true during a swap."""
        return self._predictor is not None

    def swap(self, predictor: BasePredictor) -> None:
        """Serve ``predictor`` from now on (it must already be warmed up)."""
        self._replace(predictor)

    def clear(self) -> None:
        """Stop serving (shutdown)."""
        self._replace(None)

    def retired_count(self) -> int:
        """Replaced predictors still referenced by in-flight work."""
        with self._lock:
            return sum(1 for ref, _ in self._retired if ref() is not None)

    def release_retired(self) -> None:
        """Forget replaced predictors that are gone and hand their memory back to the system."""
        with self._lock:
            freed = [cuda for ref, cuda in self._retired if ref() is None]
            self._retired = [(ref, cuda) for ref, cuda in self._retired if ref() is not None]
        if any(freed):
            import torch

            torch.cuda.empty_cache()
        if freed:
            return_freed_memory()

    def _replace(self, predictor: BasePredictor | None) -> None:
        with self._lock:
            old, self._predictor = self._predictor, predictor
            if old is not None:
                self._retired.append((weakref.ref(old), str(old.device).startswith("cuda")))
        del old  # an idle old model is freed right here, one still in use by its last batch
        self.release_retired()
