"""Parts shared by anomaly models: samplers and nearest-neighbour search."""

from models.components.coreset import greedy_coreset
from models.components.nearest import nearest_neighbours

__all__ = ["greedy_coreset", "nearest_neighbours"]
