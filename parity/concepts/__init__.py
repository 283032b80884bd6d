"""Every concept, as one plain list (one module per group family); `parity.registry` indexes it."""
from parity.concepts import basics, dtypes, layers, optim, training

CONCEPTS = [*basics.CONCEPTS, *layers.CONCEPTS, *optim.CONCEPTS, *training.CONCEPTS, *dtypes.CONCEPTS]
