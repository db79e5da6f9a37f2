"""Feature upsamplers in pure PyTorch: SimFeatUp / FeatUp joint bilateral upsampling (adaptive
convolution, range kernels, stacks) and the cosine-subspace path that upsamples coordinates, not channels.

May import runtime/ and errors only.
"""
