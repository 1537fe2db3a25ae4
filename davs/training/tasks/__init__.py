"""The three DAVS training stages as tasks for :func:`davs.training.loop.train`, one module each."""

from davs.training.tasks.base import ENCODERS, DAVSTask, accuracy
from davs.training.tasks.disent import DisentHParams, DisentTask, dis_classifier_accuracy
from davs.training.tasks.gen import GenHParams, GenTask
from davs.training.tasks.joint import JointHParams, JointTask

__all__ = ["ENCODERS", "DAVSTask", "DisentHParams", "DisentTask", "GenHParams", "GenTask", "JointHParams", "JointTask",
           "accuracy", "dis_classifier_accuracy"]
