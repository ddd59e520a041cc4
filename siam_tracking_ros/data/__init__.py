"""Readers for tracking datasets (OTB, VOT, GOT-10k, LaSOT layouts) shared by training and evaluation."""
