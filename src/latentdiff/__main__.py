"""`python -m latentdiff ...`, which is also what `accelerate launch -m latentdiff ...` runs."""

from latentdiff.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
