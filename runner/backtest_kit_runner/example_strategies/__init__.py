"""Example strategies the runner ships, to show (and test) parametrised strategies end to end."""
