"""Weights: safe readers and writers of weight files (files), the name maps of every
published layout (maps), the strict conversion rule and the converter scripts' command line
(convert), loading into the model (load), and stand-in files in the published containers
(standin)."""
