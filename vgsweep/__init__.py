"""vgsweep: Hydra-configured sweeps for studying vanishing gradients, logged to MLflow."""

__version__ = "0.1.0"
