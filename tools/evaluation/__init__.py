"""Evaluation: COCO result records and files (results), COCOeval (cocoeval), a model's pass
over a COCO-style set and the evaluation built on it, also used during training (predict),
and the command-line pieces eval.py and test_dev.py share (cli)."""
