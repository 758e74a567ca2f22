"""What the textbook needs beside the library: compute profiles and budgets (:mod:`~gmlib.book.presets`),
the papers' published numbers (:mod:`~gmlib.book.published`), plots (:mod:`~gmlib.book.viz`), the
chapters' parameter checks and the stored runs they show."""
