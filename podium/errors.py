"""User-facing errors: anything the user can fix (a recipe, a data file, a flag) exits with code 2."""


class PodiumError(Exception):
    """An error whose message is meant for the user as it is; the CLI prints it and exits 2."""

    exit_code = 2


class ConfigError(PodiumError):
    """A recipe or override is invalid; the message names the dotted path, what was found and expected."""


class DataError(PodiumError):
    """An input file is missing or malformed; the message names the file (and key, column or line)."""


class CorruptFileError(PodiumError):
    """A file podium wrote earlier no longer matches its recorded checksum."""


class LaunchRequired(PodiumError):
    """The stages to run train on several processes and this process was not started as one of them.

    The CLI answers by starting them (``engine.distributed.launch``); from Python, start the
    script with ``torchrun``.
    """

    def __init__(self, processes: int):
        self.processes = processes
        super().__init__(f"the stages to run train on {processes} processes (trainer.devices x num_nodes); "
                         f"start them with `podium run ...` (it launches them) or `torchrun --nproc-per-node "
                         f"{processes} your_script.py`")
