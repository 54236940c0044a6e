"""dropbench: overfitting experiments with exact regularizer semantics."""

__version__ = "0.1.0"
