"""One data-parallel step equals one step on the global batch: run by test_distributed.py twice, under
``torchrun --nproc_per_node 2`` (gloo) with each rank holding half of a fixed global batch, and as a
single process holding all of it. The gen stage without its cross-sample terms (the mouth head's
shuffled-audio negatives) is a per-sample mean, so the averaged gradients are the global gradient."""

import json
import os
import sys
from pathlib import Path

import torch

from davs.data.loader import LRWDecode, make_loader
from davs.data.spec import model_config_for
from davs.training import distributed as D
from davs.training.loop import train
from davs.training.streams import Stream
from davs.training.tasks import GenTask
from tests import configs

GLOBAL_BATCH = 4


def main() -> None:
    lrw, celeb, out = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    rank, world, dev = D.init_distributed("cpu")
    if os.environ.get("DDP_MATCH_BREAK"):  # for checking the test: ranks step on their own gradients
        D.allreduce_grads = lambda params: None
    torch.set_num_threads(1)
    data = configs.data(lrw, celeb, num_workers=0)
    cfg = model_config_for(data, **configs.sizes(image_size=32, feat_dim=32, width=8, gen_width=8, disc_width=8,
                                                 window=3))
    loader, _ = make_loader(f"{lrw}/val-*.tar", LRWDecode(25, 2, 3, 7, None, True), batch_size=GLOBAL_BATCH,
                            train=False, num_samples=GLOBAL_BATCH)
    batch = next(iter(loader))  # the same fixed global batch in every process
    per = GLOBAL_BATCH // world
    mine = {k: v[rank * per : (rank + 1) * per] for k, v in batch.items()}
    steps = [mine, mine]  # two steps: the second one runs on the weights the first update made
    torch.manual_seed(rank)  # a different init per rank: the loop broadcasts rank 0's (seed 0, as alone)
    task = GenTask(cfg, configs.gen(sync_gan_weight=0.0, lip_weight=0.0, mask_weight=0.0))
    train(task, {"lrw": Stream(steps, len(steps))}, configs.loop(steps=2, log_every=1, val_every=100, grad_clip=5.0),
          dev)
    mine_losses = _rank_losses(task, mine, dev)
    gathered = [None] * world
    if world > 1:
        torch.distributed.all_gather_object(gathered, mine_losses)
    else:
        gathered = [mine_losses]
    weights = torch.cat([v.flatten().double() for v in task.nets["G"].state_dict().values()]).tolist()
    if rank == 0:
        (out / f"world{world}.json").write_text(json.dumps({"world": world, "keys": batch["key"],
                                                           "losses": gathered, "weights": weights}))
    D.cleanup()


@torch.no_grad()
def _rank_losses(task: GenTask, batch: dict, dev: torch.device) -> dict[str, float]:
    """This rank's losses on its part of the batch after the two steps (same weights on every rank)."""
    task.begin_step({"lrw": batch}, dev)
    return {k: float(v) for k, v in task.losses("g").items() if k.startswith("loss/")}


if __name__ == "__main__":
    main()
