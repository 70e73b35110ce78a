"""One module per ``ternfpga`` subcommand."""
