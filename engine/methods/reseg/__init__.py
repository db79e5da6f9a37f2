"""ReSeg-CLIP internals: the per-block attention schedule, SAM id maps → patch ids → attention masks,
and running an open_clip vision tower with a different attention mask in each block."""
