"""AerOSeg (arXiv 2504.09203): trained open-vocabulary segmentation of remote-sensing images.

CLIP correlation maps from rotated images and remote-sensing prompts, refined under frozen SAM encoder
guidance (Swin spatial blocks, linear-attention class blocks), decoded by an attention-aware upsampler.
Modules: ``architecture`` (configs as data), ``clip_features``, ``trainable``, ``correlation``,
``spatial``, ``class_attention``, ``sam_guidance``, ``decoder``, ``back_projection``, ``model``,
``model_file`` (safetensors, no pickle), ``method`` (the pipeline's DenseMethod), ``training/``.
resources/docs/aeroseg.md explains the design and every choice the paper leaves open.
"""
