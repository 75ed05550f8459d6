"""The self-training teacher: an exponential moving average of the student's decoder.

Only the decoder is averaged; the frozen CLIP backbone is the same object in student and teacher (the
reference keeps one backbone and an EMA copy of `sem_seg_head`). The reference updates with a fixed alpha
(0.999) every `period` (100) iterations, including iteration 0, with no warm-up ramp; this class does the
same, so the teacher moves slowly (alpha^(iters/period)).
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor

from models.segmenter import Segmenter


def make_teacher(student: Segmenter) -> Segmenter:
    """A Segmenter with a frozen copy of the student's decoder and the student's own backbone object."""
    decoder = copy.deepcopy(student.decoder)
    decoder.requires_grad_(False)
    teacher = Segmenter(student.backbone, decoder, student.cfg)
    teacher.eval()
    return teacher


class EmaTeacher:
    """Holds `teacher` (a Segmenter sharing `student.backbone`) and keeps its decoder an EMA of the student's.

    Pass `teacher` to resume with a teacher loaded from a checkpoint (it must share the student's backbone,
    as `load_checkpoint` arranges); otherwise the teacher starts as a copy of the student.
    """

    def __init__(self, student: Segmenter, alpha: float, period: int, teacher: Segmenter | None = None) -> None:
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"EMA alpha must be in [0, 1], got {alpha}")
        if period < 1:
            raise ValueError(f"EMA period must be >= 1 iteration, got {period}")
        if teacher is not None and teacher.backbone is not student.backbone:
            raise ValueError("the EMA teacher must share the student's backbone object (only decoders are averaged)")
        self.student = student
        self.alpha = float(alpha)
        self.period = int(period)
        self.teacher = teacher if teacher is not None else make_teacher(student)

    @torch.no_grad()
    def update(self, step: int) -> bool:
        """teacher <- alpha * teacher + (1 - alpha) * student when `step % period == 0`; returns whether it did.

        Buffers (the fixed text embeddings, if any) are copied, not averaged.
        """
        if step % self.period:
            return False
        student = dict(self.student.decoder.named_parameters())
        for name, t in self.teacher.decoder.named_parameters():
            t.mul_(self.alpha).add_(student[name].detach(), alpha=1.0 - self.alpha)
        student_buffers = dict(self.student.decoder.named_buffers())
        for name, b in self.teacher.decoder.named_buffers():
            b.copy_(student_buffers[name])
        return True

    def state_dict(self) -> dict[str, Tensor]:
        """The teacher decoder's tensors (what a resume needs; alpha/period come from the config)."""
        return self.teacher.decoder.state_dict()

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.teacher.decoder.load_state_dict(state, strict=True)
