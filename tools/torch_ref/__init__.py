"""PyTorch reference for focus-engine (FOCUS vision-language model).

Run commands as ``python -m torch_ref.<cmd>`` with ``tools/`` on PYTHONPATH.
See README.md for the fixture format.
"""

__version__ = "0.1.0"
