"""Supernet training: the sandwich rule with in-place distillation, progressive or delayed
shrinking, complexity-aware sampling, BN recalibration, pickle-free checkpoints, Ray Train.

>>> from nas.train import load_spec, train, RichSink
>>> spec = load_spec("examples/train_mbv3_tiny_digits.yaml")
>>> with RichSink() as sink:
...     result = train(spec, sink)
>>> result.metrics["largest_accuracy"], result.checkpoint
"""

from __future__ import annotations

from nas.train._bn import batchnorm_layers, recalibrate_bn
from nas.train._checkpoint import (
    CHECKPOINT_FORMAT,
    Checkpoint,
    checkpoint_hash,
    latest_checkpoint,
    load_checkpoint,
    load_model,
    save_checkpoint,
)
from nas.train._data import Dataset, load_dataset, shift_augment, to_input
from nas.train._distill import kd_loss, student_loss
from nas.train._progress import FileSink, RecordingSink, RichSink, metrics_line
from nas.train._run import ARTIFACT_KIND, TrainResult, check_spec, run_dir_for, train
from nas.train._sampling import Schedule, StepPlan, SubnetSampler, choice_groups, eps_shrink, restrict_groups
from nas.train._spec import (
    DataSpec,
    ShrinkPhase,
    SpaceSpec,
    SpecError,
    TrainingSpec,
    TrainSpec,
    load_spec,
    parse_spec,
)
from nas.train._trainer import (
    LocalContext,
    NullSink,
    ProgressSink,
    SubnetEvaluator,
    build_optimizer,
    build_space,
    train_worker,
)

__all__ = [
    "ARTIFACT_KIND",
    "CHECKPOINT_FORMAT",
    "Checkpoint",
    "DataSpec",
    "Dataset",
    "FileSink",
    "LocalContext",
    "NullSink",
    "ProgressSink",
    "RecordingSink",
    "RichSink",
    "Schedule",
    "ShrinkPhase",
    "SpaceSpec",
    "SpecError",
    "StepPlan",
    "SubnetEvaluator",
    "SubnetSampler",
    "TrainResult",
    "TrainSpec",
    "TrainingSpec",
    "batchnorm_layers",
    "build_optimizer",
    "build_space",
    "check_spec",
    "checkpoint_hash",
    "choice_groups",
    "eps_shrink",
    "kd_loss",
    "latest_checkpoint",
    "load_checkpoint",
    "load_dataset",
    "load_model",
    "load_spec",
    "metrics_line",
    "parse_spec",
    "recalibrate_bn",
    "restrict_groups",
    "run_dir_for",
    "save_checkpoint",
    "shift_augment",
    "student_loss",
    "to_input",
    "train",
    "train_worker",
]
