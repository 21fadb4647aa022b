"""Model builders. Each returns an uncompiled `keras.Model`; none loads or downloads weights."""
