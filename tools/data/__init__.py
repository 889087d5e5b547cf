"""Data: COCO-style sets, image reading and test-time preprocessing, the training set, its
transforms and SOLOv2 targets, and the quick tour's synthetic shapes."""
