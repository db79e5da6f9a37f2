"""Feature upsamplers (SimFeatUp / FeatUp joint bilateral upsampling) in pure PyTorch."""
