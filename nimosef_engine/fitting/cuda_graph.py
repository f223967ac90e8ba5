"""A fitting step replayed as a CUDA graph.

On a GPU, one step of the default fit (intensity at ED and one other frame, the code prior;
the code and the pose updated by Adam) is hundreds of kernels of a few microseconds each: the
CPU that launches them, not the GPU, sets the pace. The step is captured once as a CUDA graph
and replayed with each step's points copied into its input buffers: the same objective as
:func:`nimosef_engine.losses.objective.nimosef_loss` without labels or motion, the same points
drawn from the same generator. On the lent H100, segment-track's 300-step fit of the demo cine
took 4.2-4.4 s step by step and 0.7 s replayed (``benchmarks/segment_track.py``).
"""

from __future__ import annotations

import logging

import torch

from nimosef_engine.losses.objective import (
    LossWeights,
    SubjectTensors,
    intensity_objective,
    step_points,
)

log = logging.getLogger(__name__)

EAGER_WARMUP_STEPS = 3  # steps run normally (on a side stream) before the capture, as CUDA asks


def cuda_graphs_enabled(st: SubjectTensors, motion: bool, allowed: bool = True) -> bool:
    """Whether a fit of ``st`` can replay its steps as a graph: when ``allowed``
    (:attr:`fitting.fit.FitConfig.cuda_graphs`), on a CUDA device, without the motion terms
    (their boundary points vary in number), and a cine of at least two frames."""
    return (allowed and st.coords.device.type == "cuda" and not motion
            and st.intensity.shape[0] > 1)


class GraphedFitStep:
    """Adam steps of ``code`` (and ``pose``, a module mapping coordinates, when given) on the
    intensity objective. ``opt``: a capturable :class:`fitting.adam.Adam`. :meth:`step`
    draws the step's points, runs it and returns the loss as a device scalar (valid until the
    next step)."""

    def __init__(self, net, st: SubjectTensors, code: torch.Tensor, pose, opt,
                 weights: LossWeights, n_points: int):
        self.net, self.st, self.code, self.pose, self.opt = net, st, code, pose, opt
        self.weights, self.n_points = weights, n_points
        dev = st.coords.device
        self.ed = int(torch.argmin(st.frame_times).item())
        self.ed_index = torch.tensor([self.ed], device=dev)
        self.frame_index = torch.zeros(1, dtype=torch.long, device=dev)
        self.idx = torch.zeros(n_points, dtype=torch.long, device=dev)
        self.side = torch.cuda.Stream(dev)  # where the steps before the capture run
        self.graph: torch.cuda.CUDAGraph | None = None
        self.eager_steps = 0
        self.capture_failed = False
        self.loss: torch.Tensor | None = None

    def _objective(self) -> torch.Tensor:
        coords = self.st.coords[self.idx]
        if self.pose is not None:
            coords = self.pose(coords)
        return intensity_objective(self.net, self.st, coords, self.code,
                                   (self.ed_index, self.frame_index), self.idx, self.weights)

    def _eager(self, hold_code: bool) -> None:
        side = self.side
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            self.opt.zero_grad()
            total = self._objective()
            total.backward()
            if hold_code:
                self.code.grad = None
            self.opt.step()
            self.loss = total.detach()
        torch.cuda.current_stream().wait_stream(side)

    def _capture(self) -> None:
        self.opt.zero_grad()  # backward then writes gradients that the graph owns
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph):
                total = self._objective()
                total.backward()
                self.opt.step()
        except RuntimeError as err:  # not expected: the step's ops are all capturable
            log.warning("CUDA graph capture failed (%s); fitting without it", err)
            self.capture_failed = True
            return
        self.graph, self.loss = graph, total.detach()

    def step(self, generator: torch.Generator, hold_code: bool = False) -> torch.Tensor:
        """One step; ``hold_code``: the pose alone moves (a pose warm-up step, not replayed)."""
        _, frame, idx = step_points(self.st, self.n_points, generator, use_labels=False,
                                    ed=self.ed)
        self.idx.copy_(idx)
        self.frame_index.fill_(frame)
        if self.graph is None and not hold_code and not self.capture_failed \
                and self.eager_steps >= EAGER_WARMUP_STEPS:
            self._capture()
        if self.graph is not None and not hold_code:
            self.graph.replay()
        else:
            self._eager(hold_code)
            self.eager_steps += 0 if hold_code else 1
        return self.loss
