"""Time to a target dev F1: a training clock that stops while the dev set is scored (chapter
"Making it fast").

Seconds per epoch say how fast a loop computes; what decides a user's day is how long it takes to
get a *good* model. :class:`DevClock` watches any training loop through a forward pre-hook (the
same way :class:`nerbook.bench.measure.TokenCounter` counts its tokens): every ``every`` real
training tokens it stops the clock, copies the weights into a separate fp32 model, scores the dev
set, notes ``(seconds, tokens, dev F1)`` and starts the clock again. When the dev F1 reaches the
target, or the training seconds pass the budget, it ends the run by raising :class:`StopRun`,
which the caller catches. So every contender is scored on the same schedule (in real tokens, not
steps: packing and padding differ) and in the same way, and evaluation is never on the clock.
"""

from __future__ import annotations

from time import perf_counter


class StopRun(Exception):  # noqa: N818 (a signal, not an error)
    """Raised from the hook to end a training loop: the target was reached or the budget spent."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class DevClock:
    """Scores ``eval_model`` (a fp32 copy of ``model``'s architecture, never trained) on
    ``valid_ds`` every ``every`` real tokens that ``counter`` (a :class:`TokenCounter` registered
    on ``model`` *before* this clock) has seen; see the module docstring.

    ``score(eval_model) -> float`` is the dev entity F1. Call :meth:`start` when training starts
    and :meth:`finish` when the loop ended by itself (it scores the final weights if the last
    checkpoint was earlier). ``curve`` holds the checkpoints; ``seconds`` the training time.
    """

    def __init__(self, model, eval_model, counter, score, every: int, target: float | None = None,
                 budget: float | None = None, device: str = "cpu") -> None:
        if every <= 0:
            raise ValueError(f"every must be a positive number of tokens, not {every}")
        self.model, self.eval_model, self.counter, self.score = model, eval_model, counter, score
        self.every, self.target, self.budget, self.device = every, target, budget, device
        self.curve: list[dict] = []
        self.reason = "end"
        self._seen = 0  # real tokens of every batch that has entered the model so far
        self._next = every
        self._paused = 0.0  # seconds spent scoring, off the clock
        self._t0: float | None = None
        self._busy = False
        self._handle = model.register_forward_pre_hook(self._hook, with_kwargs=True)

    def start(self) -> None:
        self._t0 = perf_counter()

    @property
    def seconds(self) -> float:
        """Training seconds so far: wall time since :meth:`start` minus the time spent scoring."""
        return perf_counter() - self._t0 - self._paused

    def _sync(self) -> None:
        if self.device == "cuda":
            import torch

            torch.cuda.synchronize()

    def checkpoint(self, tokens: int) -> float:
        """Score the weights now, trained on ``tokens`` real tokens (off the clock); note the point
        on the curve and return its F1."""
        import torch

        self._sync()
        seconds = self.seconds
        t = perf_counter()
        self._busy = True
        try:
            self.eval_model.load_state_dict(self.model.state_dict())  # copied into its fp32 weights
            with torch.autocast(self.device, enabled=False):  # fp32 for every contender
                f1 = float(self.score(self.eval_model))
        finally:
            self._busy = False
            self._paused += perf_counter() - t
        self.curve.append({"seconds": seconds, "tokens": tokens, "dev_f1": f1})
        return f1

    def _hook(self, module, args, kwargs):
        if self._busy or not module.training or self._t0 is None:
            return None
        done = self._seen  # the tokens behind the weights now: this batch has not run yet
        self._seen = int(self.counter.real.item()) if self.counter.real is not None else 0
        if self.budget is not None and self.seconds >= self.budget:
            self.checkpoint(done)
            self.reason = "budget"
            raise StopRun("budget")
        if done >= self._next:
            f1 = self.checkpoint(done)
            self._next = (done // self.every + 1) * self.every
            if self.target is not None and f1 >= self.target:
                self.reason = "target"
                raise StopRun("target")
        return None

    def finish(self) -> None:
        """The loop ended by itself: score the final weights unless the last point already did."""
        if not self.curve or self.curve[-1]["tokens"] < self._seen:
            self.checkpoint(self._seen)
        self.reason = "end"

    def remove(self) -> None:
        self._handle.remove()

    def result(self) -> dict:
        """The run's curve, the training seconds and real tokens to the target (None if not
        reached), the best dev F1 and why the run ended (``target``, ``budget`` or ``end``)."""
        hit = next((p for p in self.curve if self.target is not None and p["dev_f1"] >= self.target), None)
        return {"curve": self.curve, "reason": self.reason,
                "seconds_to_f1": hit["seconds"] if hit else None, "tokens_to_f1": hit["tokens"] if hit else None,
                "best_f1": max((p["dev_f1"] for p in self.curve), default=None),
                "eval_seconds": self._paused}
