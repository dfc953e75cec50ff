"""Training: tasks, TrainState, the pure train step, Orbax checkpoints, metric writers and the shared loop."""

from avdiff.train.loop import NonFiniteLossError, train
from avdiff.train.task import Task
