"""After the Tractor: bright neighbours, depth, summaries, sweeps, external matches, packaging."""
