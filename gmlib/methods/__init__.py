"""The distillation methods, each a :class:`gmlib.run.loop.Method`: DC and DSA (:mod:`~gmlib.methods.dc`,
with its variants, engines and plain reference), distribution matching (:mod:`~gmlib.methods.dm`),
trajectory matching (:mod:`~gmlib.methods.mtt`, its experts' buffer in
:mod:`~gmlib.methods.mtt_experts`), unrolled and implicit bi-level distillation
(:mod:`~gmlib.methods.bilevel`), generative teaching networks (:mod:`~gmlib.methods.gtn`) and the
coreset baselines (:mod:`~gmlib.methods.coreset`)."""
