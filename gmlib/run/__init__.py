"""The run scaffold: the loop every distillation method runs on (:mod:`gmlib.run.loop`), the
record of a run (:mod:`gmlib.run.history`) and its checkpoint files (:mod:`gmlib.run.checkpoint`)."""
