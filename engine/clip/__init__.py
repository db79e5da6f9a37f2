"""Dense CLIP: patch-level features and text queries from open_clip models."""
