"""ModelHolder: the predictor currently serving, swapped atomically while requests are in flight."""

from __future__ import annotations

import threading
import weakref
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from model.predictor import BasePredictor


class ModelHolder:
    """Holds one ``Predictor``; a swap never interrupts work already bound to the previous one.

    Callers take a reference with :attr:`predictor` and keep using it for the whole request, so a
    swap only changes what *new* requests get. The replaced predictor is freed when its last
    in-flight batch drops it; :meth:`release_retired` then returns cached GPU memory.
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
        """Forget replaced predictors that are gone and hand their GPU memory back to the driver."""
        with self._lock:
            alive = [(ref, cuda) for ref, cuda in self._retired if ref() is not None]
            freed_cuda = any(cuda for ref, cuda in self._retired if ref() is None)
            self._retired = alive
        if freed_cuda:
            import torch

            torch.cuda.empty_cache()

    def _replace(self, predictor: BasePredictor | None) -> None:
        with self._lock:
            old, self._predictor = self._predictor, predictor
            if old is not None:
                self._retired.append((weakref.ref(old), str(old.device).startswith("cuda")))
        del old  # an idle old model is freed right here, one still in use by its last batch
        self.release_retired()
