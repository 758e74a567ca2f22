"""Studies built on the methods: cross-architecture generalisation (:mod:`~gmlib.studies.crossarch`)
and synthetic sets as a proxy for architecture search (:mod:`~gmlib.studies.nas_proxy`)."""
