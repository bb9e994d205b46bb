"""The training worker (`python -m service.worker`): claims queued jobs one at a time and runs them.

A separate process from the API: it reads datasets from the data directory, trains with
`model.runs.train_and_save`, writes progress to the job store, saves the checkpoint into the model store
and promotes it per the job's `promote`. The API notices the new active version on its own.

`loop` claims jobs and beats their heartbeats, `job_run` runs one job (train, store, promote),
`promotion` decides whether a new version goes live, `processes` trains under torchrun for `nproc` > 1,
`identity` names workers and tells whether one is alive, `__main__` is the entry point.
"""
