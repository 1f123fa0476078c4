"""Statistics of the analysis: the binned likelihood fit and the Feldman-Cousins construction."""
