"""segcli: adversarial (GAN) image segmentation from the command line."""

__version__ = "0.1.0"

# The checkpoint format this version writes; loading refuses newer ones.
CHECKPOINT_FORMAT = 1

__all__ = ["__version__", "CHECKPOINT_FORMAT"]
