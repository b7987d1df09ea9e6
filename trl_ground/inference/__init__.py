"""Prediction on new images, and the evaluation of predictions."""
