"""`make chaos` (CONTRACT §8): Comet under a storm of faults, and what it lost (decision 0029)."""
