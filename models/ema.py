"""The self-training teacher: an exponential moving average of the student's decoder.

Only the decoder is averaged; the frozen CLIP backbone is the same object in student and teacher (the
reference keeps one backbone and an EMA copy of `sem_seg_head`). The reference updates with a fixed alpha
(0.999) every `period` (100) iterations, including iteration 0, with no warm-up ramp; this class does the
same, so the teacher moves slowly (alpha^(iters/period)).

A backbone that trains a few tensors of its own (a timm ViT with Rein tokens, LoRA or a learned neck) gets a
teacher copy whose learned tensors are averaged like the decoder's, while its frozen tensors stay the
student's (`ViTBackbone.teacher_copy`): a teacher decoder averaged against the student's ever-changing
adapters would read features it was never trained on.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from models.segmenter import Segmenter


def _teacher_backbone(backbone: nn.Module) -> nn.Module:
    """The student's own backbone object, or (for a backbone with learned tensors) its `teacher_copy`."""
    copier = getattr(backbone, "teacher_copy", None)
    trains = getattr(backbone, "trained_state_dict", None)
    return copier() if copier is not None and trains is not None and trains() else backbone


def _shares_frozen(student: nn.Module, teacher: nn.Module) -> bool:
    """True when every tensor the student does not learn is the very same tensor in the teacher."""
    if teacher is student:
        return True
    is_trained = getattr(student, "is_trained", None)
    if is_trained is None:
        return False
    mine = dict(teacher.named_parameters())
    return all(mine.get(n) is p for n, p in student.named_parameters() if not is_trained(n))


def make_teacher(student: Segmenter) -> Segmenter:
    """A Segmenter with a frozen copy of the student's decoder and the student's backbone: the same object, or,
    when the backbone learns tensors of its own, a copy sharing its frozen ones."""
    decoder = copy.deepcopy(student.decoder)
    decoder.requires_grad_(False)
    teacher = Segmenter(_teacher_backbone(student.backbone), decoder, student.cfg)
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
        if teacher is not None and not _shares_frozen(student.backbone, teacher.backbone):
            raise ValueError("the EMA teacher must share the student's backbone object, or at least its frozen "
                             "tensors (only learned tensors are averaged)")
        self.student = student
        self.alpha = float(alpha)
        self.period = int(period)
        self.teacher = teacher if teacher is not None else make_teacher(student)

    @torch.no_grad()
    def update(self, step: int) -> bool:
        """teacher <- alpha * teacher + (1 - alpha) * student when `step % period == 0`; returns whether it did.

        Buffers (the fixed text embeddings, if any) are copied, not averaged. A teacher backbone of its own has
        its learned tensors averaged the same way; tensors it shares with the student are left alone.
        """
        if step % self.period:
            return False
        pairs = [(self.teacher.decoder, self.student.decoder)]
        if self.teacher.backbone is not self.student.backbone:
            pairs.append((self.teacher.backbone, self.student.backbone))
        for teacher, student in pairs:
            params = dict(student.named_parameters())
            for name, t in teacher.named_parameters():
                if t is not params[name]:
                    t.mul_(self.alpha).add_(params[name].detach(), alpha=1.0 - self.alpha)
            buffers = dict(student.named_buffers())
            for name, b in teacher.named_buffers():
                if b is not buffers[name]:
                    b.copy_(buffers[name])
        return True

    def state_dict(self) -> dict[str, Tensor]:
        """The teacher decoder's tensors (what a resume needs; alpha/period come from the config)."""
        return self.teacher.decoder.state_dict()

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.teacher.decoder.load_state_dict(state, strict=True)
