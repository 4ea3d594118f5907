"""One module per command: `run(config)` does the work, `main(argv)` parses flags and calls it."""
