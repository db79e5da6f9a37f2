"""Model composition (ReSeg-CLIP): one CLIP from a weighted parameter average of several CLIPs of the
same architecture, weighted by how well each model's text embeddings hold up under varying prompts.

May import clip/, models/ and errors; only cli/ (the ``compose`` command) imports it.
"""
