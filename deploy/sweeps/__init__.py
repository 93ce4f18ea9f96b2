"""Sweeps: paper 2's experiments (:mod:`deploy.sweeps.zo`) and the execution phase under link delay and loss
(:mod:`deploy.sweeps.execution`), each point a run, written as CSV + PNG."""

from deploy.sweeps.zo import EXPERIMENTS, PAPER, run_experiment

__all__ = ["EXPERIMENTS", "PAPER", "run_experiment"]
