"""siamese.train: datasets, the aligned-face cache, models, losses, training and evaluation."""
