"""Temporal reads over per-frame features with a fixed number of frames of context either side.

A read of frame t from frames t - c .. t + c (a valid temporal convolution), past the sequence's ends the
first and last frames repeated. :func:`pad_edges` gives a whole sequence its edges; :func:`stream_context`
gives the same rows for a sequence that arrives in chunks, holding only 2c frames between chunks, so a
stream of any length reads exactly as the whole sequence would. G's word context
(:meth:`davs.models.generator.Generator.contextualise`) and the lip head (:class:`davs.models.lip_head.LipHead`)
both read this way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import torch


def pad_edges(x: torch.Tensor, context: int) -> torch.Tensor:
    """x (B, T, D) -> (B, T + 2 context, D): the first and last frames repeated ``context`` times."""
    return torch.cat([x[:, :1].expand(-1, context, -1), x, x[:, -1:].expand(-1, context, -1)], 1)


def stream_context(chunks: Iterable[torch.Tensor], context: int,
                   read: Callable[[torch.Tensor], torch.Tensor]) -> Iterator[torch.Tensor]:
    """Chunks (n_i, D) of one sequence -> ``read`` of each frame with its context, in order: the rows that
    ``read(pad_edges(whole[None], context)[0])`` gives, yielded as soon as their right context has arrived.
    ``read`` maps (n + 2 context, D) rows to the (n, ...) reads of the middle n. Empty chunks are skipped."""
    c = context
    buf: torch.Tensor | None = None  # the frames read so far's last 2c, then the frames still waiting
    for chunk in chunks:
        if len(chunk) == 0:
            continue
        buf = torch.cat([chunk[:1].expand(c, -1) if buf is None else buf, chunk])  # left edge repeated once
        if len(buf) > 2 * c:
            yield read(buf)  # (len(buf) - 2c, ...)
            buf = buf[len(buf) - 2 * c :]
    if buf is not None:
        yield read(torch.cat([buf, buf[-1:].expand(c, -1)]))  # right edge repeated
