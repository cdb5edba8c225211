"""Datasets as tensors and the continual-learning benchmarks built from them."""
from .benchmarks import SCENARIOS, Benchmark, Task, class_groups, permuted, split
from .datasets import LOADERS, DatasetUnavailableError, UnknownDatasetError, dataset_names, load_dataset
from .root import data_root
from .named import BENCHMARKS, UnknownBenchmarkError, benchmark_names, make_benchmark
from .tensors import Dataset, TensorData, subset_fraction, subset_per_class

__all__ = [
    "SCENARIOS", "Benchmark", "Task", "class_groups", "permuted", "split",
    "LOADERS", "DatasetUnavailableError", "UnknownDatasetError", "data_root", "dataset_names", "load_dataset",
    "BENCHMARKS", "UnknownBenchmarkError", "benchmark_names", "make_benchmark",
    "Dataset", "TensorData", "subset_fraction", "subset_per_class",
]
