"""Pure training code: a spec in, a reporter for progress, an output folder out.

Nothing here touches the database, Celery or the web app, so every strategy can be run and
tested on its own: `run_training(spec, MemoryReporter())` from `worker.training.run`.

This file imports nothing on purpose: `spec` and `reporting` need no torch, and code that
only builds a spec (the web side) should not pay for importing torch and transformers.
"""
