"""Work-arounds for third-party packages (torchvision's compiled operators), each in its own module and
active only when needed.

Imports nothing of the engine (standard library only until a hook fires), so the interpreter's start-up
``.pth`` line can load it before torch.
"""
