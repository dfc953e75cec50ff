"""Training: the `Task` base class and `tasks/`, TrainState, the pure train step, metric writers, and the loop with its
hooks (checkpoint io is `avdiff.checkpoint`)."""

from avdiff.train.loop import NonFiniteLossError, train
from avdiff.train.task import Task
