"""What is done with a trained run folder: evaluate it, compress an ε-ResNet into the smaller
network it found, export a SavedModel, compare two runs.

May import training/, models/, data/ and the base modules; nothing from results/, workflow/ or cli/.
"""
