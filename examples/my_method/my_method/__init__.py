"""An example learngene-bench plugin: one method, registered through an entry point (see pyproject.toml)."""
from my_method.cosine import CosineClassifier

__all__ = ["CosineClassifier"]
