"""siamese: a plain library for shared-weight (Siamese) Keras models.

Importing this package loads neither TensorFlow nor Prefect nor MLflow: the command line's
start-up path depends on that. Import the submodules you need.
"""
