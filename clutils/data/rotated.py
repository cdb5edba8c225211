"""Rotated MNIST (Lopez-Paz and Ranzato 2017; Buzzega et al. 2020's R-MNIST): a domain-incremental benchmark.

Every task is the whole dataset rotated by one fixed angle, drawn uniformly from
``[0, max_degrees)`` per task from ``seed`` (Buzzega et al.: 20 tasks, angles in [0, pi)).
The same rotation is applied to a task's train and test images; one shared head over
the dataset's classes. Images are rotated about their centre with bilinear
interpolation; pixels that come from outside the image repeat the border (the
background of MNIST-like images, whatever the normalisation).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .benchmarks import Benchmark, Task, check_permuted_fits
from .tensors import Dataset, TensorData


def task_angles(n_tasks: int, seed: int, max_degrees: float = 180.0) -> list[float]:
    """One angle in degrees per task, uniform in ``[0, max_degrees)``, from ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    return (torch.rand(n_tasks, generator=generator, dtype=torch.float64) * max_degrees).tolist()


def rotate(x: torch.Tensor, degrees: float, chunk: int = 4096) -> torch.Tensor:
    """Images ``(N, C, H, W)`` (or ``(N, H, W)``) rotated anticlockwise by ``degrees`` about their centre."""
    if x.dim() not in (3, 4):
        raise ValueError(f"rotate expects images (N, C, H, W) or (N, H, W), got shape {tuple(x.shape)}")
    images = x if x.dim() == 4 else x.unsqueeze(1)
    theta = math.radians(degrees)
    matrix = torch.tensor([[math.cos(theta), -math.sin(theta), 0.0], [math.sin(theta), math.cos(theta), 0.0]],
                          dtype=images.dtype, device=images.device)
    parts = []
    for part in images.split(chunk):
        grid = F.affine_grid(matrix.expand(len(part), 2, 3), list(part.shape), align_corners=False)
        parts.append(F.grid_sample(part, grid, mode="bilinear", padding_mode="border", align_corners=False))
    out = torch.cat(parts) if parts else images.clone()
    return out if x.dim() == 4 else out.squeeze(1)


def rotated(dataset: Dataset, n_tasks: int, seed: int = 0, max_degrees: float = 180.0) -> Benchmark:
    """Rotated benchmark: task ``k`` is the whole dataset rotated by its own angle (domain-incremental)."""
    if n_tasks < 1:
        raise ValueError(f"a benchmark needs at least one task, got {n_tasks}")
    if len(dataset.input_shape) not in (2, 3):
        raise ValueError(f"rotation needs image data; {dataset.name} has inputs of shape {dataset.input_shape}")
    check_permuted_fits(dataset, n_tasks)  # one rotated copy per task, as a permuted benchmark
    angles = task_angles(n_tasks, seed, max_degrees)
    classes = tuple(range(dataset.n_classes))

    def turn(data: TensorData, angle: float) -> TensorData:
        return TensorData(rotate(data.x.float(), angle).to(data.x.dtype), data.y)

    tasks = [Task(i, turn(dataset.train, a), turn(dataset.test, a), classes, f"rotation {a:.0f} degrees")
             for i, a in enumerate(angles)]
    return Benchmark(f"rotated-{dataset.name}", "domain", tasks, dataset.n_classes, dataset.input_shape,
                     dataset.name, dataset.class_names,
                     {"seed": seed, "angles": [round(a, 2) for a in angles], "source": dataset.source})
