"""Run under ``torchrun --nproc_per_node 2`` (gloo on CPU) by test_distributed.py."""

import json
import sys
from pathlib import Path

import torch

from davs.data.loader import LRWDecode, make_loader
from davs.data.spec import model_config_for
from davs.training import distributed as D
from davs.training.loop import train
from davs.training.runners import train_streams
from davs.training.tasks import JointTask
from tests import configs


def main() -> None:
    lrw, celeb, out = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    rank, world, dev = D.init_distributed("cpu")
    torch.set_num_threads(1)
    data = configs.data(lrw, celeb, batch_size=2, id_batch_size=4, num_workers=0)
    cfg = model_config_for(data, **configs.sizes(image_size=32, feat_dim=32, width=8, gen_width=8, disc_width=8,
                                                 window=3))
    # one pass over the 2 val shards (3 clips each): each rank must get exactly one shard
    loader, n = make_loader(f"{lrw}/val-*.tar", LRWDecode(25, 2, 3, 0, None, True), batch_size=1, train=True,
                            num_samples=6, world_size=world, shuffle_buffer=1)
    keys = [k for b in loader for k in b["key"]]
    torch.manual_seed(rank)  # different init per rank: the loop must broadcast rank 0's weights
    task = JointTask(cfg, configs.joint())
    train(task, train_streams(task.streams, data, cfg.window), configs.loop(steps=3, val_every=100, log_every=1), dev)
    checksum = float(sum(p.double().sum() for p in task.parameters()))
    (out / f"rank{rank}.json").write_text(json.dumps({"world": world, "keys": keys, "checksum": checksum,
                                                      "batches": n}))
    D.cleanup()


if __name__ == "__main__":
    main()
