"""Segmentation metrics that obey the label rules of docs/labels.md.

``SegmentationMetrics`` (streaming confusion matrix + boundary F1, mergeable, syncs over
torch.distributed), the ISBI 2012 measures ``pixel_error`` / ``rand_error`` (and the leaderboard's
threshold-swept ``challenge_scores``) and the
Hausdorff distance (HD95).
"""

from .boundary import boundary_f1_scores
from .confusion import SegmentationMetrics
from .hausdorff import hausdorff95_per_class, hausdorff_distance
from .isbi import ChallengeScores, challenge_scores, pixel_error, rand_error

__all__ = [
    "ChallengeScores",
    "SegmentationMetrics",
    "boundary_f1_scores",
    "challenge_scores",
    "hausdorff95_per_class",
    "hausdorff_distance",
    "pixel_error",
    "rand_error",
]
