"""A Keras callback timing each epoch, shared by the baseline script and the project side."""

import time

import keras


class EpochTimer(keras.callbacks.Callback):
    """Wall time of each epoch (training steps plus that epoch's validation)."""

    def on_epoch_begin(self, epoch, logs=None):
        self.begun = time.perf_counter()
        self.seconds = getattr(self, "seconds", [])

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self.begun)
