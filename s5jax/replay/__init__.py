"""Cache of per-clip model outputs, exact CA-SDRi replay of system configs over it, and the search."""
