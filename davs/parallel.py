"""Worker-process pools shared by corpus generation and ingestion."""

from __future__ import annotations

import multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor


def init_worker() -> None:
    """One thread per library in each worker: the pool already uses every core."""
    import cv2
    import torch

    torch.set_num_threads(1)
    cv2.setNumThreads(1)


def process_pool(workers: int) -> ProcessPoolExecutor:
    """Worker processes started by a fork server: forking a process that already runs threads (torch,
    OpenCV, decord thread pools) can deadlock the child, the fork server itself has none."""
    return ProcessPoolExecutor(workers, mp_context=mp.get_context("forkserver"), initializer=init_worker)
