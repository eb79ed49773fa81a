"""The paper's published numbers (Wang et al., AAAI 2022, Tables 2-3).

The paper's ± is undefined (most likely std over 5 target tasks). Our CIFAR-sized runs (<= 32 px)
are compared with its CIFAR100 column, larger images with its ImageNet100 column.
"""
from __future__ import annotations

# method -> (CIFAR100, ImageNet100): (mean, ±)
TABLE2 = {
    "maml": ((34.07, 0.63), (36.51, 1.01)),
    "fomaml": ((25.40, 0.50), (32.82, 0.65)),
    "protonet": ((33.20, 0.48), (36.26, 0.32)),
    "protomaml": ((39.09, 0.35), (32.57, 1.28)),
    "matchingnet": ((34.99, 0.34), (37.79, 0.39)),
    "finetune": ((38.72, 1.13), (40.72, 1.36)),
    "finetune++": ((38.83, 1.51), (37.08, 1.04)),
    "deepemd": ((39.85, 0.41), (40.21, 0.82)),
    "learngene": ((45.88, 2.99), (42.40, 2.35)),
}

# method -> {(column, shots): (mean, ±)} with column "cifar" or "imagenet"
TABLE3 = {
    "maml": {("cifar", 10): (51.70, 1.75), ("cifar", 20): (62.36, 2.88), ("imagenet", 10): (48.62, 3.10), ("imagenet", 20): (57.62, 2.42)},
    "fomaml": {("cifar", 10): (50.13, 3.73), ("cifar", 20): (60.00, 3.31), ("imagenet", 10): (43.38, 2.47), ("imagenet", 20): (51.87, 1.96)},
    "protonet": {("cifar", 10): (56.40, 2.88), ("cifar", 20): (61.02, 3.18), ("imagenet", 10): (49.91, 3.36), ("imagenet", 20): (58.62, 2.45)},
    "protomaml": {("cifar", 10): (53.11, 1.25), ("cifar", 20): (59.57, 1.34), ("imagenet", 10): (45.14, 2.52), ("imagenet", 20): (53.57, 1.34)},
    "matchingnet": {("cifar", 10): (56.71, 4.48), ("cifar", 20): (60.98, 3.09), ("imagenet", 10): (51.82, 2.58), ("imagenet", 20): (59.78, 2.94)},
    "finetune": {("cifar", 10): (48.98, 3.86), ("cifar", 20): (60.89, 3.77), ("imagenet", 10): (51.11, 3.36), ("imagenet", 20): (60.71, 2.32)},
    "finetune++": {("cifar", 10): (52.67, 4.02), ("cifar", 20): (61.20, 3.29), ("imagenet", 10): (40.80, 2.92), ("imagenet", 20): (51.78, 2.81)},
    "deepemd": {("cifar", 10): (58.03, 1.85), ("cifar", 20): (63.69, 2.05), ("imagenet", 10): (50.93, 2.78), ("imagenet", 20): (59.69, 2.47)},
    "learngene": {("cifar", 10): (58.86, 3.12), ("cifar", 20): (64.24, 1.89), ("imagenet", 10): (52.96, 4.84), ("imagenet", 20): (60.86, 4.48)},
    "learngene-ewc5000": {("cifar", 10): (58.21, 2.58), ("cifar", 20): (63.74, 2.46), ("imagenet", 10): (52.53, 4.74), ("imagenet", 20): (59.76, 5.41)},
}

PAPER_NAMES = {
    "maml": "MAML", "fomaml": "First-order MAML", "protonet": "ProtoNet", "protomaml": "Proto-MAML",
    "matchingnet": "MatchingNet", "finetune": "Fine-tuning", "finetune++": "Fine-tuning++", "deepemd": "DeepEMD",
    "learngene": "Ours (λ=1000)", "learngene-ewc5000": "Ours (λ=5000)",
}


def column_for(image_size: int) -> str:
    """Which paper column our run compares with: CIFAR-sized (<= 32 px) or ImageNet-sized."""
    return "cifar" if image_size <= 32 else "imagenet"


def table2(method: str, image_size: int) -> tuple[float, float] | None:
    row = TABLE2.get(method)
    if row is None:
        return None
    return row[0] if column_for(image_size) == "cifar" else row[1]


def table3(method: str, image_size: int, shots: int) -> tuple[float, float] | None:
    return TABLE3.get(method, {}).get((column_for(image_size), shots))
