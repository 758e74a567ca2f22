"""gmlib: the small PyTorch library behind the gradient-matching textbook.

The layout says what each module is::

    gmlib/                 the substrate every method stands on
        data/              datasets from verified sources (ImageDataset owns sampling)
        networks/          the networks of the literature, by name
        augment.py         training augmentation: DSA (dsa.py) or DC's classic MNIST one
                           (classic_augment.py), with their shared warps (image_warp.py)
        distances.py       gradient distances
        synthetic.py       the synthetic set, its initialisations and its file format
        training.py, eval_config.py, evaluate.py   the evaluation protocol
        randomness.py, progress.py, memory.py, runinfo.py, fileio.py, checks.py
    gmlib/run/             the run scaffold: the loop, its History, its checkpoints
    gmlib/methods/         the distillation methods (DC and DSA, DM, MTT, bi-level, GTN, coresets)
    gmlib/studies/         studies built on them (cross-architecture, NAS proxy)
    gmlib/book/            what the textbook needs (profiles, chapter budgets, published numbers, plots)
    gmlib/cli.py           ``python -m gmlib data|experts|distill|evaluate``

Importing gmlib is cheap and never imports torchvision: every module that needs an optional
dependency imports it inside the function that uses it.
"""

__version__ = "0.3.0"
