r"""Exponential moving average of a model's trainable weights (Polyak averaging).

With ``train_gnn.ema`` :math:`d \in (0, 1)` the trainer keeps a shadow copy
:math:`\bar\theta` of every trainable parameter :math:`\theta` and, after optimiser step
:math:`t = 1, 2, \dots`, moves it towards the live weights:

.. math::
    \bar\theta \leftarrow \bar\theta + (1 - d_t)\,(\theta - \bar\theta), \qquad
    d_t = \min\Bigl(d, \frac{1 + t}{10 + t}\Bigr)

(the warm-up :math:`d_t` is TensorFlow's ``ExponentialMovingAverage(num_updates=t)``: the random
initial head does not linger in the average). :math:`\bar\theta` averages about the last
:math:`1/(1-d)` steps, so it smooths the step-to-step noise of a fine-tuning run whose val F1 moves
by a point between epochs. Validation and the kept checkpoint use :math:`\bar\theta`
(:meth:`WeightEMA.applied` swaps it in and back); training continues on :math:`\theta`. Frozen
parameters and buffers are not averaged (they do not move).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import Tensor, nn


class WeightEMA:
    """The shadow weights of ``model``'s trainable parameters (module docstring).

    Args:
        model: the model being trained (the unwrapped module; its parameter objects are shared
            with any Fabric/DDP wrapper).
        decay: :math:`d` in (0, 1); e.g. 0.998 averages about the last 500 steps.
    """

    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must lie in (0, 1), got {decay}")
        self.decay = float(decay)
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.shadow = [p.detach().clone().float() for p in self.params]
        self.steps = 0

    @torch.no_grad()
    def update(self) -> None:
        """One step: :math:`\\bar\\theta \\leftarrow \\bar\\theta + (1 - d_t)(\\theta - \\bar\\theta)`."""
        self.steps += 1
        d = min(self.decay, (1 + self.steps) / (10 + self.steps))
        torch._foreach_lerp_(self.shadow, [p.detach().float() for p in self.params], 1.0 - d)

    @contextmanager
    @torch.no_grad()
    def applied(self) -> Iterator[None]:
        """Run the block with the averaged weights in the model, then put the live ones back."""
        live = [p.detach().clone() for p in self.params]
        for p, s in zip(self.params, self.shadow):
            p.copy_(s)
        try:
            yield
        finally:
            for p, v in zip(self.params, live):
                p.copy_(v)

    def state_dict(self) -> dict[str, Tensor]:
        """The shadow tensors and the step count, for the per-epoch training state."""
        return {**{str(i): s for i, s in enumerate(self.shadow)}, "steps": torch.tensor(self.steps)}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Restore :meth:`state_dict`'s output (the same model, so the same parameter order)."""
        for i, s in enumerate(self.shadow):
            s.copy_(state[str(i)])
        self.steps = int(state["steps"])
