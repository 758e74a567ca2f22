"""gmlib: the small PyTorch library behind the gradient-matching textbook.

Importing gmlib is cheap and never imports torchvision: every module that needs an optional
dependency imports it inside the function that uses it.
"""

__version__ = "0.2.0"
