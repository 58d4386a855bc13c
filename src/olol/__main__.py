"""`python -m olol` == `olol`."""

from olol.cli import main

main()
