"""Official PyTorch checkpoints -> ours: the restricted unpickler (torchfile), the rule engine (rules),
one conversion table per model family (m2d, resunet), and detect/read/convert (convert)."""
