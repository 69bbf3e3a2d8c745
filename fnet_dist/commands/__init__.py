"""One module per ``fnet`` subcommand: ``HELP``, ``add_arguments(parser)``, ``run(args) -> int``."""
