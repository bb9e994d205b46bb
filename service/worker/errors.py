"""How a job ends other than by success: failures for its owner, and jobs this worker lost."""


class JobError(Exception):
    """A job failure whose message is meant for the job's owner as it is."""


class JobLost(Exception):
    """The job stopped running on this worker (another worker declared it dead): record nothing more."""
