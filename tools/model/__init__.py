"""What a model is made of: manifests and window features, augmentation, the network, recipes, export, calibration, card facts (the bottom layer of tools/)."""
