"""Statistics evalboard states, each with its method: pure functions on counts and arrays.

- proportions: Wilson intervals, Newcombe difference of two proportions (comparing rounds)
- agreement: Cohen's kappa, Krippendorff's alpha (nominal), per-failure-mode kappa
- classifier: judge confusion matrix, TPR/TNR with intervals, label budget planning
- saturation: are open-coding rounds still finding new failure modes
- prevalence: bias-corrected prevalence from an imperfect judge, with an honest interval
"""

from .agreement import ModeAgreement, cohen_kappa, krippendorff_alpha, per_mode_agreement
from .classifier import (
    Confusion,
    JudgeMetrics,
    confusion,
    judge_metrics,
    labels_needed_for_width,
    wilson_width,
)
from .prevalence import (
    DEFAULT_METHOD,
    PREVALENCE_METHODS,
    CorrectionNotPossible,
    PrevalenceEstimate,
    corrected_prevalence,
    prevalence_interval_arrays,
    rogan_gladen,
)
from .proportions import Difference, Proportion, diff_interval, proportion, wilson_interval
from .saturation import Saturation, saturation

__all__ = [
    "DEFAULT_METHOD", "PREVALENCE_METHODS", "Confusion", "CorrectionNotPossible", "Difference",
    "JudgeMetrics", "ModeAgreement", "PrevalenceEstimate", "Proportion", "Saturation", "cohen_kappa",
    "confusion", "corrected_prevalence", "diff_interval", "judge_metrics", "krippendorff_alpha",
    "labels_needed_for_width", "per_mode_agreement", "prevalence_interval_arrays", "proportion",
    "rogan_gladen", "saturation", "wilson_interval", "wilson_width",
]
