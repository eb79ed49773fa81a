"""The command line, experiment definitions, running, storing and reporting."""
