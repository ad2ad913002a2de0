"""Training of the driving policy from recorded demonstrations (`liquid-driver-train`)."""

from liquid_driver.train.config import AugmentConfig, TrainConfig
from liquid_driver.train.loop import TrainingError
from liquid_driver.train.run import TrainResult, split_episodes, train

__all__ = ["AugmentConfig", "TrainConfig", "TrainResult", "TrainingError", "split_episodes", "train"]
