"""The machine: device and float-type choice, heap policy, denormals, oneDNN products, mapped arrays.

Knows nothing of segmentation: every other engine package may import it; it imports only torch, numpy
and engine.errors.
"""
