"""What every step of the recipe returns: a verdict, a sentence, and the evidence behind it."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

PASS, FAIL, SKIP = "pass", "fail", "skip"
STEPS = ("initial_loss", "overfit", "lr_range", "coarse", "refine", "final")
"""The recipe's steps, in order (a. to f.)."""


@dataclass(frozen=True)
class StepResult:
    """One step's outcome.

    Attributes:
        step: one of :data:`STEPS`.
        verdict: 'pass', 'fail' (the recipe stops) or 'skip' (nothing to check, e.g. no
            expected initial loss for a custom loss).
        message: what was found and, on a failure, what to do.
        evidence: the numbers behind the verdict (JSON data: losses, learning rates, curves).
        seconds: how long the step took.
    """

    step: str
    verdict: str
    message: str
    evidence: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """False when the step failed."""
        return self.verdict != FAIL

    def to_json(self) -> dict[str, Any]:
        """The result as JSON data (how the study records it)."""
        return {"step": self.step, "verdict": self.verdict, "message": self.message,
                "evidence": _finite(self.evidence), "seconds": round(self.seconds, 3)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StepResult:
        """Read back :meth:`to_json`."""
        return cls(data["step"], data["verdict"], data["message"], dict(data.get("evidence", {})),
                   float(data.get("seconds", 0.0)))


def _finite(data: Any) -> Any:
    """JSON data with NaN and infinities as None (JSON has no NaN)."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {str(k): _finite(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [_finite(v) for v in data]
    return data
