"""Data: dataset readers (LRW, MS-Celeb), audio features, WebDataset shard writing and loading."""
