"""Pure numba kernels of the event builder: tagging, histogram filling, array selection."""
