"""Worker-process pools shared by corpus generation and ingestion.

Workers die with the process that started them: on Linux each worker asks the kernel for SIGKILL when
its parent goes (``prctl(PR_SET_PDEATHSIG)``), elsewhere a watchdog thread polls the parent. A SIGKILLed
``davs ingest-lrw`` therefore leaves no worker behind. Workers are spawned, not forked: forking a
process that already runs threads (torch, OpenCV, decord pools) can deadlock the child, and a fork
server would be a second parent that outlives the first.
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor

_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> None:
    """Make this process exit when ``parent_pid`` (its parent) does."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0:
            if os.getppid() != parent_pid:  # the parent died before prctl took effect
                os._exit(1)
            return

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="die-with-parent", daemon=True).start()


def init_worker(parent_pid: int | None = None) -> None:
    """One thread per library in each worker (the pool already uses every core); exit with the parent."""
    import cv2
    import torch

    if parent_pid is not None:
        die_with_parent(parent_pid)
    torch.set_num_threads(1)
    cv2.setNumThreads(1)


def process_pool(workers: int) -> ProcessPoolExecutor:
    """``workers`` spawned processes that die with this one."""
    return ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=init_worker,
                               initargs=(os.getpid(),))
